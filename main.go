// Command terraform-provider-hypeman is the hypeman Terraform provider.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/hypeman/terraform-provider-hypeman/internal/provider"
)

// version is stamped by the release build (-X main.version=...).
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	flag.Parse()

	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/hypeman/hypeman",
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
