package daemon

import (
	"context"
	"errors"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/model"
	"github.com/banger-dev/banger/internal/rpc"
	"github.com/banger-dev/banger/internal/vmm"
)

// mapError is the one place service errors become RPC error codes.
func mapError(err error) *rpc.Error {
	code := api.CodeInternal
	switch {
	case errors.Is(err, model.ErrInvalid), errors.Is(err, vmm.ErrSnapshotMismatch):
		code = api.CodeInvalidArgument
	case errors.Is(err, model.ErrNotFound):
		code = api.CodeNotFound
	case errors.Is(err, model.ErrConflict):
		code = api.CodeConflict
	case errors.Is(err, model.ErrState):
		code = api.CodeWrongState
	case errors.Is(err, model.ErrUnavailable):
		code = api.CodeUnavailable
	case errors.Is(err, model.ErrCancelled), errors.Is(err, context.Canceled):
		code = api.CodeCancelled
	}
	return &rpc.Error{Code: code, Message: err.Error()}
}
