package clockskew

import (
	"bufio"
	"fmt"
	"io"
	"testing"
	"time"
)

// A fake guest whose clock is 2 s ahead, answering after a delay.
func TestMeasure(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() {
		sc := bufio.NewScanner(inR)
		for sc.Scan() {
			time.Sleep(time.Millisecond)
			fmt.Fprintf(outW, "%d\n", time.Now().Add(2*time.Second).UnixNano())
		}
		outW.Close()
	}()
	skew, bound, err := Measure(inW, bufio.NewReader(outR), 5)
	inW.Close()
	if err != nil {
		t.Fatal(err)
	}
	if d := skew - 2*time.Second; d < -bound || d > bound || bound > time.Second {
		t.Fatalf("skew %v ± %v, want 2s", skew, bound)
	}
}
