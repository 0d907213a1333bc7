package batchdb

import (
	"fmt"
	"runtime"
)

// origin records where a handle was opened, for the leak check; empty when it is off.
func origin() string {
	if !leakCheck {
		return ""
	}
	_, file, line, _ := runtime.Caller(2)
	return fmt.Sprintf("%s:%d", file, line)
}

// leaked is called by a handle's cleanup when it was never closed. Without the leak check it
// does nothing (the cleanup then releases the handle).
func leaked(what, where string) {
	if leakCheck {
		panic(fmt.Sprintf("batchdb: %s opened at %s was never closed", what, where))
	}
}
