//! The command line: clap definitions only (`cmd` acts on them).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

fn parse_users(text: &str) -> Result<f64, String> {
    let n: f64 = text
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a number of users"))?;
    if !(1.0..=1e10).contains(&n) {
        return Err(format!("`{text}`: use between 1 and 10,000,000,000 users"));
    }
    Ok(n)
}

#[derive(Debug, Parser)]
#[command(name = "chatload", version, about = "Load testing and traffic simulation for messaging systems", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write its report bundle.
    Run(RunArgs),
    /// Render a run's report.html, summary.md and junit.xml again from its summary.json and latency.hlog.
    Report(ReportArgs),
    /// Compare a candidate run with baseline runs; exit 1 when a gated quantity regressed.
    Compare(CompareArgs),
    /// Check scenario files without sending anything.
    Validate(ValidateArgs),
    /// The offered load a scenario implies (messages, deliveries, frames, bytes, connections), nothing sent.
    Plan(PlanArgs),
    /// Join the bundles of a run split with --segment into one: histograms merged exactly,
    /// accounting summed, series aligned on wall time, thresholds judged on the whole.
    Merge(MergeArgs),
    /// Find the knee: step the scenario's load up until an SLO breaks, messages are lost or
    /// refused, or chatload itself falls behind; report the highest sustainable rate.
    Capacity(CapacityArgs),
    /// Print the JSON Schema of the scenario format (for editors with TOML schema support).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions(CompletionsArgs),
    /// Run the reference messaging server on its own.
    Serve(ServeArgs),
    /// Make a system ready for a scenario (accounts, rooms) and write the ids file
    /// `[target.http] ids` reads.
    #[command(subcommand)]
    Setup(SetupCommand),
}

/// `chatload setup`'s systems.
#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// A Matrix homeserver, through its application-service API: every user registered,
    /// a room per group and per contact pair, members joined.
    Matrix(MatrixSetupArgs),
}

/// `chatload setup matrix`'s arguments.
#[derive(Debug, clap::Args)]
pub struct MatrixSetupArgs {
    /// The scenario whose population is made (its users, groups and contacts).
    pub file: PathBuf,
    /// The homeserver's client API, e.g. http://127.0.0.1:8008.
    #[arg(long)]
    pub homeserver: String,
    /// The environment variable holding the application service's `as_token`.
    #[arg(long, default_value = "CHATLOAD_MATRIX_AS_TOKEN")]
    pub as_token_env: String,
    /// The homeserver's name, the part after ':' in user ids (default: the name the
    /// homeserver gives the application service's own user).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Each user's local part, {user} replaced by its number.
    #[arg(long, default_value = "u{user}")]
    pub localpart: String,
    /// Where the ids file is written.
    #[arg(long, short)]
    pub out: PathBuf,
    /// How long one request to the homeserver may take, its connection included (a large
    /// homeserver can be slow to make rooms), e.g. 60s.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,
}

/// `chatload capacity`'s flags.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// The scenario file (TOML).
    pub file: PathBuf,
    /// A service-level objective each step must meet, e.g. 'delivery.p99<200ms'
    /// (repeatable; the scenario's [thresholds] are replaced by these).
    #[arg(long = "slo", value_name = "RULE")]
    pub slos: Vec<String>,
    /// The first multiplier of the scenario's load (its rates; its users for a closed model).
    #[arg(long, default_value_t = 1.0)]
    pub from: f64,
    /// The largest multiplier tried.
    #[arg(long, default_value_t = 16.0)]
    pub to: f64,
    /// Each coarse step multiplies the load by this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Bisection steps between the last good and the first bad load. A load that breaks is
    /// measured once more and judged by the second measurement.
    #[arg(long, default_value_t = 4)]
    pub refine: u32,
    /// How long each step runs, e.g. 20s (the scenario's timeline is stretched to it, as by
    /// `run --duration`).
    #[arg(long, default_value = "20s")]
    pub step_time: String,
    /// URL of the target (default: the scenario's, else the embedded server).
    #[arg(long)]
    pub target: Option<String>,
    /// Trust the CA certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Where the capacity bundle goes (default: reports/<scenario>-capacity-<UTC time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No live progress inside each step.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `chatload run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub file: PathBuf,
    /// URL of the target, e.g. ws://127.0.0.1:7070/v1/ws, mqtt://127.0.0.1:1883 or
    /// http://127.0.0.1:8080 (default: the scenario's, else the embedded server).
    #[arg(long)]
    pub target: Option<String>,
    /// Trust the CA certificates in this PEM file for wss://, https:// and mqtts://.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Override the scenario's duration, e.g. 10s or 2m; its timeline is stretched to fit
    /// (stages, a storm's `at`, a campaign's `start`, a diurnal day spanning the run).
    #[arg(long)]
    pub duration: Option<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the population's size (people; the online share and groups per person
    /// stay as the scenario says).
    #[arg(long, value_name = "N")]
    pub users: Option<u64>,
    /// Run segment INDEX of COUNT (0-based, e.g. 2/8): this machine's share of a run
    /// split across COUNT machines; `chatload merge` joins their bundles.
    #[arg(long, value_name = "INDEX/COUNT")]
    pub segment: Option<String>,
    /// Start sending at this UTC time (RFC 3339, e.g. 2026-12-01T10:00:00Z), so that
    /// every segment begins together.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Where the business webhook receiver listens (default 127.0.0.1 on a free port);
    /// the address the target posts to, e.g. a pod's IP when the target runs elsewhere.
    #[arg(long, value_name = "HOST:PORT")]
    pub webhook_listen: Option<String>,
    /// Write the report bundle into this folder (default: reports/<scenario>-<UTC time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the report bundle already in --out (without it, such a folder is refused
    /// before the run starts).
    #[arg(long)]
    pub force: bool,
    /// No live progress; only the final table and errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// An extra pass/fail rule, added to the scenario's [thresholds], e.g.
    /// 'delivery.p99<300ms', 'loss==0', 'error_rate<0.1%' (repeatable).
    #[arg(long = "threshold", value_name = "RULE")]
    pub thresholds: Vec<String>,
    /// End the run early (exit 1, bundle written) when a threshold is clearly broken: a
    /// count past its limit, or a latency over twice its limit on 500+ samples.
    #[arg(long)]
    pub abort_on_fail: bool,
    /// Threads the run uses. The users are spread over N threads, each with its own event
    /// loop and pacer (a closed loop: one async runtime of N workers). Default: one when the
    /// scenario's planned peak is at most 100,000 frames/s (twice counted with the embedded
    /// server, three times over TLS) and 10,000 connections, and not a closed loop; else one
    /// per core this process may use. summary.json's machine.workers says which.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// `chatload report`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run's bundle folder.
    pub dir: PathBuf,
}

/// `chatload compare`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Bundle folders (or summary.json files): one or more baselines, then the candidate.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Allowed worsening before a gated quantity counts as regressed, e.g. 10%.
    #[arg(long, default_value = "10%")]
    pub max_regression: String,
    /// Gate on these quantities instead of the defaults (delivery.p99, send.p99,
    /// messages_per_s, loss_rate, error_rate), e.g. --metric fanout.p99 (repeatable).
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    /// Also write the Markdown to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare runs that differ for reasons other than the target: of different scenarios
    /// (or versions of one file), with a different seed, population, duration or share of
    /// users (--seed, --users, --duration, --segment), or that ended early; without it they
    /// are refused.
    #[arg(long)]
    pub allow_different: bool,
}

/// `chatload validate`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// One or more scenario files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `chatload plan`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The scenario file (TOML).
    pub file: PathBuf,
    /// Scale the population to this many users (up to 1,000,000,000; underscores allowed).
    #[arg(long, value_parser = parse_users)]
    pub users: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A `chatload capacity` result (its folder): say how many servers of that measured
    /// capacity the peak needs.
    #[arg(long, value_name = "DIR")]
    pub capacity: Option<PathBuf>,
    /// Spare capacity to keep on top of the peak, e.g. 30% (with --capacity).
    #[arg(long, default_value = "30%")]
    pub headroom: String,
}

/// `chatload merge`'s arguments.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The segments' bundle folders (every segment exactly once).
    #[arg(required = true, num_args = 1..)]
    pub bundles: Vec<PathBuf>,
    /// Where the merged bundle goes.
    #[arg(long)]
    pub out: PathBuf,
}

/// `chatload completions`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

/// `chatload serve`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Worker threads of the async runtime (default: one per core this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Added latency for every delivery, e.g. 25ms.
    #[arg(long)]
    pub delay: Option<String>,
    /// Drop every Nth delivery (tests of loss accounting).
    #[arg(long, default_value_t = 0)]
    pub drop_every: u64,
    /// Deliver every Nth delivery twice.
    #[arg(long, default_value_t = 0)]
    pub duplicate_every: u64,
    /// Hold back every Nth delivery until after the next one.
    #[arg(long, default_value_t = 0)]
    pub reorder_every: u64,
    /// Take and deliver every Nth send but never confirm it (tests of unacknowledged sends).
    #[arg(long, default_value_t = 0)]
    pub drop_ack_every: u64,
    /// Write every send's confirmation this long after taking it, e.g. 200ms (a slow
    /// acknowledgement path).
    #[arg(long)]
    pub ack_delay: Option<String>,
    /// Added latency drawn per delivery, in scenario syntax, e.g.
    /// '{ lognormal = { median = "2ms", sigma = 0.5 }, max = "50ms" }'.
    #[arg(long)]
    pub latency: Option<String>,
    /// Every Nth delivery freezes its recipient's connection for --stall.
    #[arg(long, default_value_t = 0)]
    pub stall_every: u64,
    /// How long a stall lasts, e.g. 2s.
    #[arg(long, default_value = "1s")]
    pub stall: String,
    /// Every Nth delivery cuts its recipient's connection (resent on resume).
    #[arg(long, default_value_t = 0)]
    pub reset_every: u64,
    /// Every Nth delivery is held back --hold before it goes out (a late delivery).
    #[arg(long, default_value_t = 0)]
    pub hold_every: u64,
    /// How long a held delivery waits, e.g. 10s.
    #[arg(long, default_value = "10s")]
    pub hold: String,
    /// Discard deliveries for users who are not connected instead of keeping them for
    /// their next connection (a server that loses offline queues).
    #[arg(long)]
    pub no_offline_queue: bool,
    /// Connections open at once; more are closed on arrival and counted (default: nine
    /// tenths of the process's file limit).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long a client may take to send a request header or WebSocket upgrade.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub header_timeout: String,
    /// Members one group may have; a larger group definition is refused and counted.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_group_size: usize,
    /// Deliveries kept per user until acknowledged (its offline queue); past it the
    /// oldest is dropped and counted.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub queue_per_user: usize,
    /// Bytes of kept deliveries across all users, e.g. 256MiB; past it new deliveries are
    /// sent to online users but not kept, and counted.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub queue_bytes: String,
    /// Bytes of frames one connection may have waiting to be written beyond what its
    /// socket took, e.g. 256KiB; a client that stops reading is cut past it and counted
    /// (what it is owed stays kept for its next connection).
    #[arg(long, default_value = "256KiB", value_name = "SIZE")]
    pub max_write_queue: String,
    /// Messages per second the server can take and deliver; past it they queue (a
    /// known knee for `chatload capacity`).
    #[arg(long, value_name = "N")]
    pub max_rate: Option<f64>,
    /// A business API fault rate, CODE=P: 130429, 131056, 131048, 500, timeout, 131026,
    /// 131049 (repeatable), e.g. --error 130429=0.01.
    #[arg(long = "error", value_name = "CODE=P")]
    pub errors: Vec<String>,
    /// Webhooks wait a random time up to this before they are sent, e.g. 500ms.
    #[arg(long)]
    pub webhook_reorder: Option<String>,
    /// Seed for the injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
