//! The one definition of sfbpatch's command line. Help, the man page and shell completions are
//! all generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sfbpatch",
    version,
    about = "Apply a cumulative update to a whole Skype for Business Server deployment",
    long_about = "sfbpatch reads the topology you already have (Get-CsTopology -AsXml, a Topology Builder \
file, or a TOML inventory), plans the documented update procedure for every machine (Standard \
Edition servers; the Front End servers of Enterprise pools, one at a time behind failover; their \
SQL Server back ends and every store), carries it out with a write-ahead journal, keeps each \
back-end outage under the 30-minute line after which users drop into resiliency mode, and \
reports what happened.\n\n\
Try it on the built-in simulated lab: `sfbpatch demo`.",
    after_help = "Exit codes: 0 success, 1 a run ended with failed or skipped servers, 2 bad input, \
3 refused (a pool leased by another run, a confirmation not given, nothing to resume, a run that \
does not exist), 4 interrupted (Ctrl-C, the end of the maintenance window, a canary wave awaiting \
approval), 5 internal or store error.\n\n\
A failed server: `sfbpatch retry SERVER`, then `sfbpatch resume`. An SSH problem: -v or -vv (and \
--log-file FILE for an overnight run); see docs/troubleshooting.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// When to use colour on stderr; auto: only on a terminal, and never when NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Log more on stderr: -v what sfbpatch does (connections, commands), -vv debug (each SSH
    /// command with its template, timeout and exit status), -vvv trace. RUST_LOG, when set,
    /// wins (e.g. RUST_LOG=sfbpatch_ssh=debug,russh=debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only errors on stderr: no notes, no log lines but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Append the log to FILE too, with timestamps and without colour: every line the filter
    /// allows, and sfbpatch's debug lines even without -v (for an overnight run).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Read and inspect topology files.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Show the exact procedure for every server, without running anything.
    Plan(PlanArgs),
    /// Make package manifests.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Create and inspect a simulated deployment.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Read what every machine runs, before the night, changing nothing.
    ///
    /// Reads, on every machine of the plan and without changing anything, what it runs: the
    /// Skype for Business services present and running, IIS (W3SVC), the Management Shell,
    /// SQL Server, the installed build and its product line, and a pending restart; and says
    /// what a run would do there. It is the pre-flight `apply` runs before any outage.
    Probe(ProbeArgs),
    /// Carry out the plan: patch every selected server.
    Apply(ApplyArgs),
    /// Continue the newest unfinished run after a crash or an interrupt.
    Resume(ResumeArgs),
    /// Stand by on a second controller: take the run over if its controller stops.
    ///
    /// Watches the run's leases; when none is live (its controller's process is gone, or it
    /// stopped renewing), carries the run on with an ordinary resume: probe first, never twice.
    Standby(StandbyArgs),
    /// Show the state of a run, server by server.
    Status(StatusArgs),
    /// Report on a run as HTML or JSON: timeline, user impact per pool, failures, audit.
    Report(ReportArgs),
    /// Approve a run's canary wave; `sfbpatch resume` then starts the rest.
    Approve(ApproveArgs),
    /// Serve a live web dashboard of the runs in the state store.
    ///
    /// One self-contained page (nothing loaded from the network) lists the runs and shows a
    /// run live: each server's step, progress and outage clock against the 30-minute line,
    /// each pool's back-end time, users in resiliency mode and Front End servers in service,
    /// failures with their output, a canary wave awaiting approval and the maintenance window.
    /// It reads the store, so it works beside `apply` and `resume` in other processes and after
    /// they end. JSON for tools at /api/runs and /api/runs/ID, live updates at
    /// /api/runs/ID/events (server-sent events). See docs/serve.md.
    #[command(
        after_help = "Exit codes: 0 stopped, 2 bad usage (an address other than loopback without \
a token, an unreadable token file), 3 no such state store, 5 cannot listen or store error."
    )]
    Serve(ServeArgs),
    /// Try a failed server again: `sfbpatch resume` then patches it.
    ///
    /// Records in the run's journal that SERVER, which failed, is to be tried again: it is
    /// pending again, with every step it completed kept as done (steps of its outage window
    /// that the recovery undid run again; the installer never runs twice), the pre-flight
    /// reads it again first, and the servers its failure skipped are pending again too. A run
    /// that ended failed becomes resumable. Nothing runs on any server until `sfbpatch
    /// resume`. See docs/troubleshooting.md.
    #[command(
        after_help = "Exit codes: 0 marked for retry, 2 a server that is not in the run, 3 refused \
(the server did not fail, the run's controller is still running, no such run or state store), 5 \
store error."
    )]
    Retry(RetryArgs),
    /// Check rollout policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Break the lease a run holds on a pool (after a crash on another machine, say).
    Unlock(UnlockArgs),
    /// Patch a bundled multi-pool sample in a temporary lab, end to end.
    Demo(DemoArgs),
    /// Print shell completions.
    Completions {
        /// The shell to print completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): sfbpatch's, or a subcommand's; or write them all.
    #[command(
        long_about = "Print a man page (roff), generated from the same definition as --help: \
sfbpatch's own, or a subcommand's (`sfbpatch man apply`, `sfbpatch man topology show`); or, with \
--all DIR, write every page (sfbpatch.1, sfbpatch-apply.1, sfbpatch-topology-show.1, ...) into \
DIR, e.g. for `man -M` or a package's share/man/man1."
    )]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print, as typed after `sfbpatch` (`topology show`);
    /// none: sfbpatch's page.
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "all")]
    pub command: Vec<String>,
    /// Write every page into DIR (created if missing) instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The failed server (FQDN) to try again.
    #[arg(value_name = "SERVER")]
    pub server: String,
    #[command(flatten)]
    pub state: StateArg,
    /// The run the server failed in; default: the newest.
    #[arg(long)]
    pub run: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// The steps and commands per server, for people.
    Text,
    /// A stable JSON document (schemas in docs/schema/), for tools.
    Json,
    /// A commented script per server that an administrator could run by hand.
    Powershell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    /// Progress on stderr, summary as text on stdout.
    Text,
    /// Progress on stderr, summary as JSON on stdout.
    Json,
    /// The engine's events as JSON lines on stdout.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Print the pools, their back ends and the database-update variant each needs.
    Show {
        /// A published topology (Get-CsTopology -AsXml), a .tbxml file, or a TOML inventory.
        file: PathBuf,
        /// text for people, json for tools (docs/schema/topology.schema.json).
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Write a valid published-format topology with a realistic mix of pools.
    Generate {
        /// The product line every service is of: ServiceVersion 8 (2019) or 7 (2015).
        #[arg(long, value_enum, default_value_t = ProductChoice::V2019)]
        product: ProductChoice,
        /// How many pools (Front End pools and Standard Edition servers) to write; at least 1.
        #[arg(long)]
        pools: usize,
        /// The same seed always writes the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// A product line, as users name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProductChoice {
    /// Lync Server 2013 (builds 5.0.8308.*).
    #[value(name = "2013")]
    V2013,
    /// Skype for Business Server 2015 (builds 6.0.9319.*).
    #[value(name = "2015")]
    V2015,
    /// Skype for Business Server 2019 (builds 7.0.2046.*).
    #[value(name = "2019")]
    V2019,
}

impl ProductChoice {
    pub fn line(self) -> sfbpatch_topology::ProductLine {
        use sfbpatch_topology::ProductLine;
        match self {
            ProductChoice::V2013 => ProductLine::Lync2013,
            ProductChoice::V2015 => ProductLine::SfB2015,
            ProductChoice::V2019 => ProductLine::SfB2019,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Write a package manifest for an installer: its SHA-256, and its build from the file's
    /// version resource (or --version).
    New {
        /// The installer (SkypeServerUpdateInstaller.exe) on this machine.
        installer: PathBuf,
        /// The build the update installs, when the file does not state it (or to check that it
        /// states this one).
        #[arg(long, value_name = "BUILD")]
        version: Option<String>,
        /// The product line, when the build alone does not say (Subscription Edition builds
        /// continue the 2019 line).
        #[arg(long, value_enum)]
        product: Option<ProductChoice>,
        /// A label for people; default: the product line and build.
        #[arg(long)]
        name: Option<String>,
        /// Where to write the manifest; default: stdout. The installer is named relative to it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The topology file.
    pub topology: PathBuf,
    /// The package manifest (TOML).
    #[arg(long)]
    pub package: PathBuf,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Only this server or pool (FQDN); repeatable.
    #[arg(long, value_name = "FQDN|POOL")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

/// What the planner needs beyond the topology, for `plan` and `apply`.
#[derive(Debug, Args)]
pub struct PlanningArgs {
    /// A back-end or store SQL Server machine that has the Skype for Business Core Components
    /// and Management Shell, so that `Install-CsDatabase` runs there (as the inventory's
    /// `sfb_components = true`); repeatable.
    #[arg(long = "sfb-components-on", value_name = "FQDN")]
    pub sfb_components_on: Vec<String>,
    /// A Front End pool whose fabric shows missing replicas is recovered with
    /// `Reset-CsPoolRegistrarState -ResetType QuorumLossRecovery` first, instead of left
    /// unpatched.
    #[arg(long)]
    pub reset_missing_replicas: bool,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create a lab from a topology.
    Init {
        /// The directory to create the lab in.
        dir: PathBuf,
        /// The topology the lab simulates.
        #[arg(long)]
        topology: PathBuf,
        /// The build every server starts at.
        #[arg(long, default_value = "7.0.2046.0")]
        build: String,
        /// Simulated seconds per real second; 0 = no waiting.
        #[arg(long, default_value_t = 0.0)]
        speed: f64,
        /// Faults to inject (TOML, [[fault]] tables).
        #[arg(long)]
        faults: Option<PathBuf>,
        /// The account that acts on the lab's servers.
        #[arg(long, default_value = "LAB\\sfbadmin")]
        operator: String,
        /// Back-end or store SQL Server machines that have the Skype for Business Core
        /// Components and Management Shell (as the inventory's `sfb_components = true`);
        /// repeatable.
        #[arg(long = "sfb-components-on", value_name = "FQDN")]
        sfb_components_on: Vec<String>,
        /// Give every server its own step durations, drawn from SEED: a per-server speed,
        /// occasional slow servers, a jitter per step (docs/lab.md). Without it every step takes
        /// the same time on every server, the engine's default prediction.
        #[arg(long, value_name = "SEED")]
        variance: Option<u64>,
    },
    /// Print the lab's servers, databases and pools.
    Show {
        /// The lab's directory.
        dir: PathBuf,
        /// text for people, json for tools.
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Stand in for a Windows server behind sshd: run the script sfbpatch sent against the lab.
    #[command(
        long_about = "Stand in for a Windows server behind sshd: run the script sfbpatch sent \
against the lab, and print the one JSON result line a Windows server would.\n\n\
Meant as an sshd ForceCommand (`ForceCommand sfbpatch lab shell --lab DIR --host FQDN`): the \
command the client sent is read from SSH_ORIGINAL_COMMAND. Only the scripts sfbpatch itself sends \
are accepted: `powershell.exe -NoProfile -NonInteractive -EncodedCommand` with one of its templates, \
unaltered, and validated parameters.\n\n\
Exit status: 0 when a result line was printed (the step's own exit code is inside it); 2 for a \
refused request (no SSH_ORIGINAL_COMMAND, an unknown or altered script, a host that is not in the \
lab); 3 when the lab refuses the request; 124 when the step hung past its timeout; 255 when the \
lab's fault plan makes the server unreachable, as a lost connection would. Without a result \
line, the step's outcome is unknown to the caller."
    )]
    Shell {
        /// The lab's directory.
        #[arg(long)]
        lab: PathBuf,
        /// The lab server this host stands for.
        #[arg(long, value_name = "FQDN")]
        host: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// The state store: a SQLite file, or a postgres://user@host/db URL.
    #[arg(
        long,
        default_value = "sfbpatch.db",
        env = "SFBPATCH_STATE",
        hide_env_values = true
    )]
    pub state: String,
}

#[derive(Debug, Args)]
pub struct RunOptions {
    /// A rollout policy file (TOML); the flags below win over it. See `sfbpatch policy check`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// How long the state store may stay unreachable, in seconds, before the run stops (exit
    /// 5); until then every server is held at its next step boundary and the run goes on by
    /// itself when the store is back.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub store_outage_limit: u64,
    /// How long the run's leases on its pools live without renewal, in seconds (renewed every
    /// third of it): how soon `sfbpatch standby` (or a resume on another host) may take the
    /// run over once this controller stops.
    #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(3..=86_400))]
    pub lease_ttl: u64,
    /// This controller's name in leases and messages [default: the host name]: give each
    /// controller of a team its own.
    #[arg(long, value_name = "NAME", value_parser = controller_name)]
    pub controller_name: Option<String>,
    /// Outage budget per server, in minutes [default: 30].
    #[arg(long, value_name = "MINUTES")]
    pub outage_budget: Option<f64>,
    /// Start servers whose predicted outage exceeds the budget.
    #[arg(long)]
    pub accept_resiliency: bool,
    /// Servers in their outage window at once [default: 1]. Never two of one back end.
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<u32>,
    /// Servers in their outage window at once per site.
    #[arg(long, value_name = "N")]
    pub max_parallel_per_site: Option<u32>,
    /// Failed servers tolerated; one more stops the run [default: 0].
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u32>,
    /// Failed servers tolerated, as a percentage of the run's servers.
    #[arg(long, value_name = "PERCENT")]
    pub max_failure_percent: Option<f64>,
    /// Skip an isolated failed server and keep going, within the failure budget.
    #[arg(long)]
    pub continue_on_failure: bool,
    /// Canary waves, e.g. 1,5,25% (the rest is the last wave).
    #[arg(long, value_name = "LIST")]
    pub waves: Option<String>,
    /// After the first wave, wait for `sfbpatch approve RUN` and `sfbpatch resume`.
    #[arg(long)]
    pub pause_after_canary: bool,
    /// Daily maintenance window, e.g. 22:00-05:00: a server starts only if it is predicted to
    /// finish inside it.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub window: Option<String>,
    /// The window's time zone (IANA name) [default: UTC].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Which servers go first.
    #[arg(long, value_enum)]
    pub order: Option<OrderChoice>,
    /// Front End servers of one pool out at once: one server (Microsoft's procedure), or the
    /// servers of one upgrade domain [default: server].
    #[arg(long, value_enum, value_name = "BATCH")]
    pub front_end_batch: Option<FrontEndBatchChoice>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderChoice {
    /// Plan order.
    Plan,
    /// Standard Edition servers first.
    StandardFirst,
    /// Enterprise pools (Front End servers, then their back ends) first.
    EnterpriseFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrontEndBatchChoice {
    /// One Front End server of a pool at a time.
    Server,
    /// One upgrade domain of a pool at a time.
    UpgradeDomain,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a rollout policy file and print the policy it gives.
    Check {
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub state: StateArg,
    /// The address to listen on. Anything but loopback needs --token or --token-file.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8466")]
    pub listen: std::net::SocketAddr,
    /// A token every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN` in
    /// the page's address); at least 16 characters. Prefer --token-file: a command line is
    /// visible to other users of the host.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the token from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow the page's actions: approve a canary wave, ask a run to stop at its next step
    /// boundary. Each is recorded with who asked (--operator).
    #[arg(long)]
    pub allow_actions: bool,
    /// Who the actions are recorded as asked by [default: the account serving].
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
}

/// `--serve [ADDR]`: the dashboard beside a run, in the same process.
pub const SERVE_DEFAULT: &str = "127.0.0.1:8466";

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run whose canary wave to approve.
    pub run: i64,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The topology file.
    pub topology: PathBuf,
    /// The package manifest (TOML).
    #[arg(long)]
    pub package: PathBuf,
    #[command(flatten)]
    pub at: TargetArgs,
    #[command(flatten)]
    pub state: StateArg,
    /// Only this server or pool (FQDN); repeatable.
    #[arg(long, value_name = "FQDN|POOL")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Check everything and show what would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Start nothing: stand by (on a second controller host) for the run another controller
    /// starts or runs on these servers, and take it over if that controller stops renewing its
    /// leases (as `sfbpatch standby`). Exits when that run ends.
    #[arg(long, conflicts_with = "dry_run")]
    pub standby: bool,
    /// Serve the live dashboard (`sfbpatch serve`, without actions) beside the run, on ADDR
    /// (loopback) [default ADDR: 127.0.0.1:8466]; the address is printed at start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = SERVE_DEFAULT, conflicts_with = "dry_run")]
    pub serve: Option<std::net::SocketAddr>,
    /// With --standby: seconds between two looks at the store.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, requires = "standby", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll: u64,
    #[command(flatten)]
    pub run: RunOptions,
}

/// Where the steps run, for `apply` and `probe`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Where the steps run: the simulated lab in --lab, or real servers over SSH.
    #[arg(long, value_enum, default_value_t = TargetChoice::Lab)]
    pub target: TargetChoice,
    /// Run against the simulated lab in this directory (--target lab).
    #[arg(long, required_if_eq("target", "lab"))]
    pub lab: Option<PathBuf>,
    /// How to reach each server over SSH (TOML, see docs/ssh.md); without it, the inventory's
    /// connection keys (--target ssh).
    #[arg(long, value_name = "FILE")]
    pub connections: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// `sfbpatch probe`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every machine answered, 1 at least one could not be read (its row \
says why), 2 bad input, 5 internal or store error."
)]
pub struct ProbeArgs {
    /// The topology file.
    pub topology: PathBuf,
    /// The package manifest (TOML): the build each machine is compared with.
    #[arg(long)]
    pub package: PathBuf,
    #[command(flatten)]
    pub at: TargetArgs,
    #[command(flatten)]
    pub state: StateArg,
    /// Only this server or pool (FQDN); repeatable.
    #[arg(long, value_name = "FQDN|POOL")]
    pub only: Vec<String>,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// text for people, json for tools.
    #[arg(long, value_enum, default_value_t = DataFormat::Text)]
    pub format: DataFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetChoice {
    /// The simulated lab (--lab DIR).
    Lab,
    /// Real servers over SSH (--connections FILE, or the inventory's connection keys).
    Ssh,
}

/// SSH target options, for `apply` and for `resume` of an SSH run.
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// Trust a server's host key the first time it is seen, and pin it in the state store,
    /// instead of refusing to connect (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// SSH connections open at once, at most (one per server).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_connections: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub state: StateArg,
    /// The run to resume; default: the newest.
    #[arg(long)]
    pub run: Option<i64>,
    /// The SSH connections file to use instead of the one the run recorded: for a resume on
    /// another controller host, where it (and the identity files it names) lives elsewhere.
    #[arg(long, value_name = "FILE")]
    pub connections: Option<PathBuf>,
    /// This controller's name in leases and messages [default: the host name].
    #[arg(long, value_name = "NAME", value_parser = controller_name)]
    pub controller_name: Option<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// What to print.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
    /// Serve the live dashboard (`sfbpatch serve`, without actions) beside the run, on ADDR
    /// (loopback) [default ADDR: 127.0.0.1:8466]; the address is printed at start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = SERVE_DEFAULT)]
    pub serve: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct StandbyArgs {
    /// The run to stand by for (default: the newest), and how to resume it.
    #[command(flatten)]
    pub resume: ResumeArgs,
    /// Seconds between two looks at the run's leases.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub state: StateArg,
    /// The run to show; default: the newest.
    #[arg(long)]
    pub run: Option<i64>,
    /// text for people, json for tools (docs/schema/status.schema.json).
    #[arg(long, value_enum, default_value_t = DataFormat::Text)]
    pub format: DataFormat,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("output").required(true).multiple(true).args(["html", "format"])))]
pub struct ReportArgs {
    #[command(flatten)]
    pub state: StateArg,
    /// The run to report on; default: the newest.
    #[arg(long)]
    pub run: Option<i64>,
    /// Write the report as one self-contained HTML file (no network needed to view or print it).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the report: json for tools (docs/schema/report.schema.json), text for a summary.
    #[arg(long, value_enum)]
    pub format: Option<DataFormat>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The pool's FQDN.
    pub pool: String,
    #[command(flatten)]
    pub state: StateArg,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second (0 = as fast as possible).
    #[arg(long, default_value_t = 600.0)]
    pub speed: f64,
    /// Keep the lab and state in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
}

/// A controller name: printable, no `#` (it separates the name in an instance id).
fn controller_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control() || c == '#') {
        return Err("a name of 1 to 64 printable characters, without '#'".to_string());
    }
    Ok(s.to_string())
}
