package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/config"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
)

func TestMapError(t *testing.T) {
	cases := map[error]int{
		model.Errorf(model.ErrInvalid, "x"):     api.CodeInvalidArgument,
		fmt.Errorf("a: %w", model.ErrNotFound):  api.CodeNotFound,
		model.Errorf(model.ErrConflict, "x"):    api.CodeConflict,
		model.Errorf(model.ErrState, "x"):       api.CodeWrongState,
		model.Errorf(model.ErrUnavailable, "x"): api.CodeUnavailable,
		fmt.Errorf("op: %w", context.Canceled):  api.CodeCancelled,
		errors.New("disk on fire"):              api.CodeInternal,
	}
	for err, code := range cases {
		got := mapError(err)
		if got.Code != code || got.Message != err.Error() {
			t.Errorf("mapError(%v) = %+v, want code %d", err, got, code)
		}
	}
}

func TestAuthorize(t *testing.T) {
	d := &Daemon{cfg: config.Config{SocketGroup: "banger"}, groupID: 1234, hasGroup: true}
	self := uint32(os.Geteuid())
	other := self + 4242
	if self == 0 {
		other = 4242
	}
	allow := []rpc.Caller{
		{UID: 0, GID: 0},
		{UID: self, GID: 999},
		{UID: other, GID: 1234},
		{UID: other, GID: 1, Groups: []uint32{5, 1234}},
	}
	for _, c := range allow {
		if err := d.authorize(c, rpc.AccessMember); err != nil {
			t.Errorf("%+v refused: %v", c, err)
		}
	}
	outsider := rpc.Caller{UID: other, GID: 1, Groups: []uint32{5}}
	err := d.authorize(outsider, rpc.AccessMember)
	if err == nil || !strings.Contains(err.Error(), "usermod -aG banger") {
		t.Fatalf("outsider: %v", err)
	}
	if err := d.authorize(outsider, rpc.AccessAny); err != nil {
		t.Fatalf("AccessAny refused: %v", err)
	}
	d.hasGroup = false
	if err := d.authorize(outsider, rpc.AccessMember); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("outsider with no group: %v", err)
	}
}

// Every method in the table needs membership: none is public by accident.
func TestMethodTableAccess(t *testing.T) {
	d := &Daemon{}
	for name, m := range d.methods() {
		if m.Access != rpc.AccessMember {
			t.Errorf("%s is callable by anyone", name)
		}
	}
}
