// Package racetest runs the other side of a race in tests: the owner of a
// directory swapping a path for a link, over and over, while the code under
// test checks and uses it.
package racetest

// Loop calls f(0), f(1), ... on another goroutine until the returned stop
// is called; stop returns once f has.
func Loop(f func(i int)) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			f(i)
		}
	}()
	return func() { close(quit); <-done }
}
