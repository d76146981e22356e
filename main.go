// Command terraform-provider-hypeman is the hypeman Terraform provider.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/hypeman/terraform-provider-hypeman/internal/provider"
	"github.com/hypeman/terraform-provider-hypeman/internal/provider/pluginlogs"
)

// version is stamped by the release build (-X main.version=...).
var version = "dev"

// afterServe runs once the provider has stopped serving (a profile build writes its profile).
var afterServe = func() {}

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()
	if !debug {
		// Under a debugger the logs go to the terminal, which asked for them.
		pluginlogs.QuietUnlessAsked("hypeman")
	}

	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/hypeman/hypeman",
		Debug:   debug,
	})
	afterServe()
	if err != nil {
		log.Fatal(err)
	}
}
