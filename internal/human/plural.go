package human

// Counted renders n with its noun, singular for exactly one and plural otherwise: "1 retry",
// "85 retries", "0 items". Every count the product prints in words goes through it, so that
// no line says "1 retries".
func Counted(n int64, singular, plural string) string {
	if n == 1 || n == -1 {
		return Count(n) + " " + singular
	}
	return Count(n) + " " + plural
}
