package instances

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/network"
	"github.com/hypeman/terraform-provider-hypeman/internal/hypervisor/vmm"
)

// Orphan is a VMM process whose instance no longer exists: its directory was removed (by hand,
// say) while the VM ran, so no instance shows it and nothing would ever stop it. The next create
// of its name stops it, and so does a Delete of its id or name.
type Orphan struct {
	PID int
	// ID is the instance its command line names, and Dir that instance's directory, now gone.
	ID, Dir    string
	Hypervisor string
	// Name is the name whose reservation still points at ID; "" when none does.
	Name string
}

// vmmProcess is a process of this data directory's VMMs: the program of a configured driver,
// with a command line that names one instance directory under guests/.
type vmmProcess struct {
	pid        int
	id         string
	hypervisor string
}

// Orphans lists the VMM processes on the host whose instance directory is gone, sorted by id.
// It costs one look at the host's processes and, when any VMM runs, one at guests/.
func (m *Manager) Orphans(ctx context.Context) ([]Orphan, error) {
	procs, err := m.vmmProcesses(ctx, "")
	if err != nil || len(procs) == 0 {
		return nil, err
	}
	// Listed after the processes: a directory is made before its VMM starts and removed after
	// it stopped, so a VMM seen above whose directory is not listed here has lost it.
	entries, err := m.host.ReadDir(ctx, m.layout.guests())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("look for orphaned VMMs: %w", err)
	}
	dirs := map[string]bool{}
	for _, e := range entries {
		dirs[e.Name()] = true
	}
	var out []Orphan
	for _, p := range procs {
		if !dirs[p.id] {
			out = append(out, Orphan{PID: p.pid, ID: p.id, Dir: m.layout.dir(p.id), Hypervisor: p.hypervisor})
		}
	}
	if err := m.nameOrphans(ctx, out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].PID < out[j].PID
	})
	return out, nil
}

// vmmProcesses finds the VMM processes of this data directory: of the instance id, or of every
// instance when id is "". Only a configured driver's program whose command line names exactly one
// directory guests/{id}/ (as a whole argument or an option's value) counts, so that no other
// process, another data directory's VMM included, is ever taken for one.
func (m *Manager) vmmProcesses(ctx context.Context, id string) ([]vmmProcess, error) {
	prefix := m.layout.guests() + "/"
	if id != "" {
		prefix = m.layout.dir(id) + "/"
	}
	procs, err := m.host.Processes(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("look for VMM processes: %w", err)
	}
	dirRE := regexp.MustCompile(`(?:^|=)` + regexp.QuoteMeta(m.layout.guests()+"/") + `([0-9A-HJKMNP-TV-Z]{26})/`)
	var out []vmmProcess
	for _, p := range procs {
		drv := m.driverOfProgram(p.Args)
		if drv == nil {
			continue
		}
		ids := map[string]bool{}
		for _, a := range p.Args[1:] {
			for _, match := range dirRE.FindAllStringSubmatch(a, -1) {
				ids[match[1]] = true
			}
		}
		if len(ids) != 1 {
			continue // names no instance directory, or several: not one of ours to judge
		}
		for found := range ids {
			if id == "" || found == id {
				out = append(out, vmmProcess{pid: p.PID, id: found, hypervisor: drv.Name()})
			}
		}
	}
	return out, nil
}

// driverOfProgram is the configured driver whose VMM program argv runs, nil when none.
func (m *Manager) driverOfProgram(argv []string) vmm.Driver {
	if len(argv) == 0 {
		return nil
	}
	for _, d := range m.opts.Drivers {
		if path.Base(argv[0]) == path.Base(d.Program()) {
			return d
		}
	}
	return nil
}

// nameOrphans fills in the names that still point at the orphans' ids. Only a data directory
// with orphans pays for reading the names.
func (m *Manager) nameOrphans(ctx context.Context, orphans []Orphan) error {
	if len(orphans) == 0 {
		return nil
	}
	names, err := m.host.ReadDir(ctx, m.layout.names())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look for the names of orphaned VMMs: %w", err)
	}
	owners := make([]string, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, n := range names {
		if ValidateName(n.Name()) != nil {
			continue // a name's lock
		}
		g.Go(func() error {
			owner, err := m.host.Readlink(gctx, m.layout.name(n.Name()))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			owners[i] = owner
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("look for the names of orphaned VMMs: %w", err)
	}
	for i, owner := range owners {
		for j := range orphans {
			if owner != "" && orphans[j].ID == owner {
				orphans[j].Name = names[i].Name()
			}
		}
	}
	return nil
}

// stopStrays stops every VMM process of the instance id that is not in its metadata's care: what
// runs for a directory that is gone or is being removed, or what a create that died started
// before it could record the pid. The caller holds the instance's lock, or the instance is gone,
// so no operation owns such a process. It returns how many it stopped.
func (m *Manager) stopStrays(ctx context.Context, id string) (int, error) {
	procs, err := m.vmmProcesses(ctx, id)
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		m.log(ctx, "stopping a VMM whose instance is gone", map[string]any{"id": id, "pid": p.pid, "hypervisor": p.hypervisor})
		gone, err := m.terminate(ctx, p.pid, m.layout.dir(id))
		if err != nil {
			return 0, fmt.Errorf("stop the %s process %d of the removed instance %s: %w", p.hypervisor, p.pid, id, err)
		}
		if !gone {
			return 0, fmt.Errorf("the %s process %d of the removed instance %s did not exit after SIGKILL", p.hypervisor, p.pid, id)
		}
	}
	return len(procs), nil
}

// deleteGone is Delete of an instance whose directory is gone: a VMM still running for it is
// stopped, and its name, address and TAP device are freed. With no such VMM, the instance is
// simply not there: notFound.
func (m *Manager) deleteGone(ctx context.Context, id string, notFound error) error {
	n, err := m.stopStrays(ctx, id)
	if err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if n == 0 {
		return notFound
	}
	if err := m.removeDir(ctx, id); err != nil { // what was left of it, if anything
		return fmt.Errorf("delete %s: remove what is left of its files: %w", id, err)
	}
	if m.net != nil {
		if err := m.forgetNetwork(ctx, id); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := m.releaseNamesOf(ctx, id); err != nil {
		return fmt.Errorf("delete %s: release its name: %w", id, err)
	}
	m.log(ctx, "deleted an instance whose directory was gone", map[string]any{"id": id, "stopped_vmms": n})
	return nil
}

// forgetNetwork frees the address and the TAP device of an instance whose metadata is gone.
func (m *Manager) forgetNetwork(ctx context.Context, id string) error {
	taps, err := m.net.Taps(ctx)
	if err != nil {
		return err
	}
	for _, tap := range taps {
		if tap.Owner == id {
			if err := network.DeleteTap(ctx, m.host, tap.Name); err != nil {
				return err
			}
		}
	}
	if err := m.net.Release(ctx, id); err != nil {
		return fmt.Errorf("release its network address: %w", err)
	}
	return nil
}
