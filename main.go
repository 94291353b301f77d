// Command throttle runs big backfill jobs against systems that have limits, as fast as the
// other system allows and no faster. See the cli package for the commands.
package main

import (
	"os"

	"github.com/throttle-dev/throttle/cli"
)

func main() {
	os.Exit(cli.Main(cli.System()))
}
