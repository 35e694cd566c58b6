package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	_ "github.com/cairn-data/cairn/state/pebblestate" // stores of the pebble provider
	_ "github.com/cairn-data/cairn/storage/s3"        // s3:// checkpoint locations
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem, or could not run
	exitUsage   = 2 // the command line is wrong
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, tty: isTerminal(os.Stdout)}
	code := c.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), where
// progress lines can be redrawn in place.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// cli holds what every command writes to.
type cli struct {
	stdout, stderr io.Writer
	tty            bool // stdout is a terminal
}

// command is one subcommand. Its flags are registered on a fresh FlagSet
// for every invocation, bound to variables the run function closes over.
type command struct {
	name    string // "demo", "checkpoint verify"
	args    string // positional arguments in the usage line: "DIR"
	nargs   int    // exact number of positional arguments
	argHelp string // what to say when the positional arguments are missing
	summary string // one line, for the command list
	doc     string // paragraphs after the usage line
	example string // shell lines
	hidden  bool   // not listed in help (the demo's child process)
	flags   func(fs *flag.FlagSet)
	run     func(ctx context.Context, c *cli, inv *invocation) error
}

// invocation is a parsed command line of one command.
type invocation struct {
	cmd  *command
	args []string        // positional arguments
	set  map[string]bool // flags given on the command line
}

// commands returns the subcommands, in the order help lists them. A fresh
// list per call keeps flag variables from leaking between invocations.
func commands() []*command {
	return []*command{
		demoCommand(),
		demoJobCommand(),
		demoStateCommand(),
		demoWriterCommand(),
		verifyCommand(),
		inspectCommand(),
		cleanCommand(),
		readCommand(),
		sinkReadCommand(),
		pipelineStatusCommand(),
		pipelineGCCommand(),
		pipelineDropStageCommand(),
		sourceSkipCommand(),
		sourceRereadCommand(),
		versionCommand(),
	}
}

// usageError is a wrong command line: exit status 2.
type usageError struct {
	cmd *command // nil for errors before a command is known
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *command, format string, a ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, a...)}
}

// errReported says the command printed its findings and wants exit
// status 1 without a further message.
var errReported = errors.New("problems reported")

// run runs one command line and returns the exit status.
func (c *cli) run(ctx context.Context, args []string) int {
	err := c.dispatch(ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errReported):
		return exitFailure
	case errors.As(err, &ue):
		if ue.cmd != nil {
			fmt.Fprintf(c.stderr, "cairn %s: %s\nusage: %s\nRun 'cairn %s --help' for the flags and an example.\n",
				ue.cmd.name, ue.msg, usageLine(ue.cmd), ue.cmd.name)
		} else {
			fmt.Fprintf(c.stderr, "cairn: %s\nRun 'cairn help' for the list of commands.\n", ue.msg)
		}
		return exitUsage
	case ctx.Err() != nil:
		fmt.Fprintln(c.stderr, "cairn: interrupted")
		return exitFailure
	default:
		fmt.Fprintf(c.stderr, "cairn: %v\n", err)
		return exitFailure
	}
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

func (c *cli) dispatch(ctx context.Context, args []string) error {
	cmds := commands()
	if len(args) == 0 {
		c.printHelp(c.stderr, cmds)
		return &usageError{msg: "no command given"}
	}
	if isHelpFlag(args[0]) || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			if len(args) == 2 && len(groupCommands(cmds, args[1])) > 0 {
				c.printGroupHelp(c.stdout, cmds, args[1])
				return nil
			}
			cmd, _, err := lookup(cmds, args[1:])
			if err != nil {
				return err
			}
			c.printCommandHelp(c.stdout, cmd)
			return nil
		}
		c.printHelp(c.stdout, cmds)
		return nil
	}
	cmd, rest, err := lookup(cmds, args)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) && ue.cmd == nil && len(rest) > 0 && isHelpFlag(rest[0]) {
			// "cairn checkpoint --help": list the group's commands.
			c.printGroupHelp(c.stdout, cmds, args[0])
			return nil
		}
		return err
	}
	fs := flag.NewFlagSet("cairn "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by run, help by printCommandHelp
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		c.printCommandHelp(c.stdout, cmd)
		return nil
	}
	if err != nil {
		return usagef(cmd, "%s", strings.Replace(err.Error(), " -", " --", 1))
	}
	switch {
	case len(pos) < cmd.nargs:
		return usagef(cmd, "%s", cmd.argHelp)
	case len(pos) > cmd.nargs && cmd.nargs == 0:
		return usagef(cmd, "unexpected argument %q: this command takes only flags", pos[0])
	case len(pos) > cmd.nargs:
		return usagef(cmd, "too many arguments: expected %s, got %q", cmd.args, pos)
	}
	inv := &invocation{cmd: cmd, args: pos, set: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { inv.set[f.Name] = true })
	return cmd.run(ctx, c, inv)
}

// lookup finds the command named by the first one or two words of args and
// returns the arguments after the name.
func lookup(cmds []*command, args []string) (*command, []string, error) {
	if len(args) >= 2 {
		for _, cmd := range cmds {
			if cmd.name == args[0]+" "+args[1] {
				return cmd, args[2:], nil
			}
		}
	}
	for _, cmd := range cmds {
		if cmd.name == args[0] {
			return cmd, args[1:], nil
		}
	}
	if subs := groupCommands(cmds, args[0]); len(subs) > 0 {
		if len(args) == 1 {
			return nil, args[1:], usagef(nil, "%q needs a subcommand: %s", args[0], strings.Join(subs, ", "))
		}
		return nil, args[1:], usagef(nil, "unknown command \"%s %s\": the %s commands are %s",
			args[0], args[1], args[0], strings.Join(subs, ", "))
	}
	return nil, nil, usagef(nil, "unknown command %q; the commands are %s", args[0], strings.Join(visibleNames(cmds), ", "))
}

// groupCommands returns the full names of the visible commands of a group
// such as "checkpoint".
func groupCommands(cmds []*command, group string) []string {
	var out []string
	for _, cmd := range cmds {
		if !cmd.hidden && strings.HasPrefix(cmd.name, group+" ") {
			out = append(out, "'cairn "+cmd.name+"'")
		}
	}
	return out
}

func visibleNames(cmds []*command) []string {
	var out []string
	for _, cmd := range cmds {
		if !cmd.hidden {
			out = append(out, cmd.name)
		}
	}
	return out
}

// parseInterspersed parses flags that come before, between and after
// positional arguments ("cairn checkpoint inspect DIR --json"), which
// flag.FlagSet.Parse alone does not: it stops at the first positional
// argument. Everything after a "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usageLine(cmd *command) string {
	s := "cairn " + cmd.name
	if cmd.args != "" {
		s += " " + cmd.args
	}
	if cmd.flags != nil {
		s += " [flags]"
	}
	return s
}

func (c *cli) printHelp(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `cairn is a data engine whose first promise is that a job never loses its place:
checkpoints survive crashes. This command runs the demo job and looks into
checkpoint locations.

Usage: cairn COMMAND [arguments] [flags]

Commands:
`)
	width := 0
	for _, cmd := range cmds {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range cmds {
		if !cmd.hidden {
			fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
		}
	}
	fmt.Fprint(w, `  help [COMMAND]`+strings.Repeat(" ", max(0, width-len("help [COMMAND]")))+`  show this list, or a command's usage

A checkpoint location DIR is a directory path or a storage URL (file:///abs/path).
Flags may come before or after the arguments. Every command takes --help.

Start with:
  cairn demo
`)
}

func (c *cli) printGroupHelp(w io.Writer, cmds []*command, group string) {
	fmt.Fprintf(w, "Usage: cairn %s SUBCOMMAND [arguments] [flags]\n\nSubcommands:\n", group)
	for _, cmd := range cmds {
		if !cmd.hidden && strings.HasPrefix(cmd.name, group+" ") {
			fmt.Fprintf(w, "  %-20s %s\n", cmd.name, cmd.summary)
		}
	}
	fmt.Fprintf(w, "\nRun 'cairn %s SUBCOMMAND --help' for its flags and an example.\n", group)
}

func (c *cli) printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", usageLine(cmd), strings.TrimSpace(cmd.doc))
	if cmd.flags != nil {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.flags(fs)
		fmt.Fprint(w, "\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			typ, usage := flag.UnquoteUsage(f)
			head := "  --" + f.Name
			if typ != "" {
				head += " " + typ
			}
			fmt.Fprintln(w, head)
			def := ""
			if !strings.Contains(usage, "(default") && !strings.Contains(usage, "(required)") && f.DefValue != "" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "        %s%s\n", usage, def)
		})
		fmt.Fprint(w, "  --help\n        print this help\n")
	}
	if cmd.example != "" {
		fmt.Fprintf(w, "\nExample:\n%s\n", indent(strings.TrimSpace(cmd.example), "  "))
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + strings.TrimLeft(l, "\t")
		}
	}
	return strings.Join(lines, "\n")
}
