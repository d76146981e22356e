package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network/netnstest"
)

// The networked acceptance test runs whole (registry, Terraform, provider and guests) in a
// network namespace of its own (netnstest.Enter): the bridge, the TAPs and every packet stay in it.

const (
	accBridge   = "hmacc0"
	accSubnet   = "10.123.0.0/24"
	accFixedIP  = "10.123.0.50"
	accFixedMAC = "02:00:00:00:0b:01"
)

// serverProgram serves "hello-$NAME" on port 80 of the guest.
var serverProgram = []string{"/bin/sh", "-c", `mkdir -p /www && echo "hello-$NAME" > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www`}

var (
	macRE = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
	tapRE = regexp.MustCompile(`^hm[0-9a-z]{12}$`)
)

// networkConfig is a provider with a host network and two web servers: a with the next free
// address, b with a fixed one. b depends on a, so that one's standby, stop or restore is done
// before the other boots, and no two VMs run at once.
func (e *accEnv) networkConfig(stateA, stateB string, dataSources bool) string {
	entrypoint, _ := json.Marshal(serverProgram)
	config := e.providerBlock(fmt.Sprintf(`
  network {
    bridge = %q
    subnet = %q
    uplink = "none"
  }
`, accBridge, accSubnet)) + fmt.Sprintf(`
resource "hypeman_instance" "a" {
  name         = "acc-net-a"
  image        = %[1]q
  memory       = "256MiB"
  overlay_size = "256MiB"
  entrypoint   = %[2]s
  env          = { NAME = "a" }
  state        = %[3]q
}

resource "hypeman_instance" "b" {
  name         = "acc-net-b"
  image        = %[1]q
  memory       = "256MiB"
  overlay_size = "256MiB"
  entrypoint   = %[2]s
  env          = { NAME = "b" }
  network      = { ip = %[5]q, mac = %[6]q }
  state        = %[4]q
  depends_on   = [hypeman_instance.a]
}
`, e.image, entrypoint, stateA, stateB, accFixedIP, accFixedMAC)
	if dataSources {
		config += `
data "hypeman_instance" "a" {
  name = hypeman_instance.a.name
}

data "hypeman_instances" "all" {
  depends_on = [hypeman_instance.a, hypeman_instance.b]
}
`
	}
	return config
}

// link is what ip reports about one interface of the namespace; ok is false when there is none.
func link(name string) (master string, ok bool, err error) {
	out, err := exec.Command("ip", "-json", "link", "show", "dev", name).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return "", false, nil
		}
		return "", false, fmt.Errorf("ip link show %s: %v: %s", name, err, out)
	}
	var links []struct {
		Master string `json:"master"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return "", false, fmt.Errorf("ip link show %s: %v: %s", name, err, out)
	}
	return links[0].Master, true, nil
}

// httpGet asks the web server at ip from the namespace's host side until it answers, for at most
// a minute (the guest may still be booting).
func httpGet(ip string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + ip + "/")
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(body), nil
			}
			err = fmt.Errorf("status %s, %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("http://%s/ did not answer within a minute: %w", ip, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// neighbourMAC is the MAC the namespace's host side learnt for ip.
func neighbourMAC(ip string) (string, error) {
	out, err := exec.Command("ip", "-json", "neigh", "show", ip).Output()
	if err != nil {
		return "", fmt.Errorf("ip neigh show %s: %w", ip, err)
	}
	var neigh []struct {
		MAC string `json:"lladdr"`
	}
	if err := json.Unmarshal(out, &neigh); err != nil || len(neigh) == 0 {
		return "", fmt.Errorf("no neighbour entry for %s: %v %s", ip, err, out)
	}
	return neigh[0].MAC, nil
}

// netVM follows one instance's network through the test.
type netVM struct {
	addr    string
	id      string
	tap     string
	console string
	offset  int // console bytes before the current step
}

func (v *netVM) capture(s *terraform.State) error {
	var err error
	if v.id, err = stateAttr(s, v.addr, "id"); err != nil {
		return err
	}
	if v.tap, err = stateAttr(s, v.addr, "tap_device"); err != nil {
		return err
	}
	v.console, err = stateAttr(s, v.addr, "console_log")
	return err
}

// serves checks that the instance's TAP is on the bridge, that its web server answers at its
// ip_address with body, and that it answers from its mac_address.
func (v *netVM) serves(body string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if err := v.capture(s); err != nil {
			return err
		}
		if master, ok, err := link(v.tap); err != nil || !ok || master != accBridge {
			return fmt.Errorf("TAP %s of %s: present %v, on %q, %v; want it on %s", v.tap, v.addr, ok, master, err, accBridge)
		}
		ip, err := stateAttr(s, v.addr, "ip_address")
		if err != nil {
			return err
		}
		got, err := httpGet(ip)
		if err != nil {
			return err
		}
		if got != body {
			return fmt.Errorf("http://%s/ answered %q, want %q", ip, got, body)
		}
		mac, err := stateAttr(s, v.addr, "mac_address")
		if err != nil {
			return err
		}
		if seen, err := neighbourMAC(ip); err != nil || seen != mac {
			return fmt.Errorf("%s answers from MAC %q (%v), but mac_address is %s", ip, seen, err, mac)
		}
		return nil
	}
}

// tapGone checks that the instance's TAP is not in the namespace.
func (v *netVM) tapGone() error {
	if v.tap == "" {
		return errors.New(v.addr + ": no TAP name recorded")
	}
	if _, ok, err := link(v.tap); err != nil || ok {
		return fmt.Errorf("TAP %s of %s is still there (%v)", v.tap, v.addr, err)
	}
	return nil
}

func (v *netVM) noTap() resource.TestCheckFunc {
	return func(s *terraform.State) error {
		if err := v.capture(s); err != nil {
			return err
		}
		return v.tapGone()
	}
}

func TestAccInstanceNetwork(t *testing.T) {
	requireAcc(t)
	if !netnstest.Enter(t) {
		return
	}
	env := newAccEnv(t)
	const addrA, addrB = "hypeman_instance.a", "hypeman_instance.b"
	a, b := &netVM{addr: addrA}, &netVM{addr: addrB}
	// a's addresses and TAP name are the same in every step, Standby and restore included.
	same := map[string]interface {
		AddStateValue(string, tfjsonpath.Path) statecheck.StateCheck
	}{}
	for _, attr := range []string{"id", "ip_address", "mac_address", "tap_device"} {
		same[attr] = statecheck.CompareValue(compare.ValuesSame())
	}
	step := func(stateA, stateB string, actionA, actionB plancheck.ResourceActionType, checks ...resource.TestCheckFunc) resource.TestStep {
		var sameChecks []statecheck.StateCheck
		for attr, c := range same {
			sameChecks = append(sameChecks, c.AddStateValue(addrA, tfjsonpath.New(attr)))
		}
		return resource.TestStep{
			Config: env.networkConfig(stateA, stateB, false),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addrA, actionA),
					plancheck.ExpectResourceAction(addrB, actionB),
				},
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			ConfigStateChecks: sameChecks,
			Check: resource.ComposeTestCheckFunc(append([]resource.TestCheckFunc{
				resource.TestCheckResourceAttr(addrA, "state", stateA),
				resource.TestCheckResourceAttr(addrB, "state", stateB),
				resource.TestCheckResourceAttr(addrB, "ip_address", accFixedIP),
				resource.TestCheckResourceAttr(addrB, "mac_address", accFixedMAC),
			}, checks...)...),
		}
	}

	create := step("Running", "Stopped", plancheck.ResourceActionCreate, plancheck.ResourceActionCreate,
		// The first free address of the subnet after the gateway.
		resource.TestCheckResourceAttr(addrA, "ip_address", "10.123.0.2"),
		resource.TestMatchResourceAttr(addrA, "mac_address", macRE),
		resource.TestMatchResourceAttr(addrA, "tap_device", tapRE),
		resource.TestMatchResourceAttr(addrB, "tap_device", tapRE),
		a.serves("hello-a\n"),
		b.noTap(),
		resource.TestCheckResourceAttrPair("data.hypeman_instance.a", "ip_address", addrA, "ip_address"),
		resource.TestCheckResourceAttrPair("data.hypeman_instance.a", "mac_address", addrA, "mac_address"),
		resource.TestCheckResourceAttrPair("data.hypeman_instance.a", "tap_device", addrA, "tap_device"),
		resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.0.ip_address", addrA, "ip_address"),
		resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.1.ip_address", addrB, "ip_address"),
		resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.1.mac_address", addrB, "mac_address"),
		resource.TestCheckResourceAttrPair("data.hypeman_instances.all", "instances.1.tap_device", addrB, "tap_device"))
	create.Config = env.networkConfig("Running", "Stopped", true)

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy: func(*terraform.State) error {
			for _, v := range []*netVM{a, b} {
				if _, err := os.Stat(env.instanceDir(v.id)); !os.IsNotExist(err) {
					return fmt.Errorf("instance directory %s is still there (%v)", env.instanceDir(v.id), err)
				}
				if err := v.tapGone(); err != nil {
					return err
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			create,
			step("Standby", "Running", plancheck.ResourceActionUpdate, plancheck.ResourceActionUpdate,
				a.noTap(),
				b.serves("hello-b\n")),
			step("Standby", "Stopped", plancheck.ResourceActionNoop, plancheck.ResourceActionUpdate,
				b.noTap(),
				func(*terraform.State) error {
					a.offset = len(console(t, a.console))
					return nil
				}),
			step("Running", "Stopped", plancheck.ResourceActionUpdate, plancheck.ResourceActionNoop,
				a.serves("hello-a\n"),
				func(*terraform.State) error {
					// Restored, not booted again: the server answering is the one from before Standby.
					if after := console(t, a.console)[a.offset:]; startedMarkers(after) != 0 {
						return fmt.Errorf("the guest booted again instead of being restored:\n%s", after)
					}
					return nil
				}),
		},
	})
}
