// Command demoimage writes a small busybox image as an OCI image layout, so that `make demo` boots
// a VM without reaching any registry.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hypeman/terraform-provider-hypeman/internal/ociimage"
)

func main() {
	out := flag.String("o", "", "directory of the OCI image layout to write (replaced if it exists)")
	tag := flag.String("tag", "latest", "tag of the image in the layout")
	busybox := flag.String("busybox", ociimage.BusyboxPath, "static busybox to put in the image")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "demoimage: -o DIR is required")
		os.Exit(2)
	}
	img, err := ociimage.Busybox(*busybox, ociimage.Options{})
	if err == nil {
		err = os.RemoveAll(*out)
	}
	if err == nil {
		err = ociimage.WriteLayout(*out, img, *tag)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoimage:", err)
		os.Exit(1)
	}
	fmt.Printf("demoimage: wrote oci:%s:%s\n", *out, *tag)
}
