//! goose as the virtual-user lifecycle: goose launches its users on the profile's envelope,
//! each carrying a pod of consumers' [`VirtualUser`]s that it runs in one transaction until
//! the run stops it (`RunContext::users_stop`), then tells goose it is done; goose ends the
//! attack when every user has, and closes each through its on-stop transaction. Up to
//! [`GOOSE_USERS_MAX`] consumers a pod holds one consumer (one goose user each); past that,
//! pods grow so goose keeps about that many users, because goose's own state per user (its
//! task holding a `GooseUser` with a copy of the configuration, and its weighted user list:
//! 6.9 KB measured) would otherwise be most of a connected user's memory. Each consumer
//! still connects at its own time on the profile. Configured from code only; never reads the
//! process arguments. The run phases, not this file, decide when a run ends.

use super::context::RunContext;
use super::vu::VirtualUser;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use goose::client::GooseClientBuilder;
use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::goose::{
    GooseUser, Scenario as GooseScenario, Transaction, TransactionFunction, TransactionResult,
};
use goose::{GooseAttack, GooseError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// After a user has told goose it is done, goose calls the drive transaction again until its
/// main loop has seen every user done and sends each its stop; each such call waits this long
/// instead of spinning.
const STOPPED_POLL: Duration = Duration::from_millis(50);

/// Most goose users a run has: past this many consumers, each goose user carries a pod of
/// several.
pub const GOOSE_USERS_MAX: u32 = 1_000;

/// How many consumers one goose user carries when this process runs `local_users`.
fn pod_size(local_users: u32) -> u32 {
    local_users.div_ceil(GOOSE_USERS_MAX).max(1)
}

/// What goose holds for one of its users: the pod's virtual users (held once on the heap
/// rather than inside every running transaction's future) and whether the goose user has
/// told goose it is done.
#[derive(Clone)]
struct Seat(Arc<SeatState>);

struct SeatState {
    pod: Mutex<Vec<VirtualUser>>,
    done: AtomicBool,
}

fn take(user: &GooseUser) -> Option<(Seat, Vec<VirtualUser>)> {
    let seat = user.get_session_data::<Seat>()?.clone();
    let pod = std::mem::take(&mut *seat.0.pod.lock().ok()?);
    Some((seat, pod))
}

fn put_back(seat: &Seat, pod: Vec<VirtualUser>) {
    if let Ok(mut s) = seat.0.pod.lock() {
        *s = pod;
    }
}

/// Tells goose, once, that this user is done. goose ends an attack by itself (and stops every
/// user through its on-stop transaction) when every user it has launched says so; this is
/// the per-attack stop that goose 0.19 otherwise offers only through its process-wide
/// killswitch. The number is the user's own, so each user counts once.
fn tell_goose_done(user: &GooseUser) {
    let first = user
        .get_session_data::<Seat>()
        .is_some_and(|seat| !seat.0.done.swap(true, Relaxed));
    if first && let Some(done) = &user.shutdown_channel {
        let _ = done.send(user.weighted_users_index);
    }
}

/// How many users goose has launched so far against how many its plan launches in all: a
/// run stopped before the last launch cannot wait for goose's plan to launch the rest.
#[derive(Clone)]
pub struct Launches {
    launched: Arc<AtomicUsize>,
    planned: usize,
}

impl Launches {
    pub fn all_launched(&self) -> bool {
        self.launched.load(Relaxed) >= self.planned
    }
}

type TxFuture<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

fn transaction<F>(f: F) -> TransactionFunction
where
    F: for<'r> Fn(&'r mut GooseUser) -> TxFuture<'r> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// goose's launch plan: the profile's envelope in whole seconds (goose's resolution) and in
/// pods of `pod` consumers, rounded so goose launches each pod no later than its first
/// consumer is due, then a hold longer than the run; the run ends it earlier by telling goose
/// every user is done. Returns the plan and how many goose users it launches in all (goose
/// launches at least one).
fn test_plan(ctx: &RunContext, pod: u32) -> (String, usize) {
    let mut steps = Vec::new();
    let mut last = 0u32;
    let seg = ctx.segment;
    for (users, length_us) in ctx.profile.launch_envelope() {
        let users = seg.members_of(seg.index, users).div_ceil(pod);
        let secs = length_us / 1_000_000;
        // Never fewer than already launched: a user who goes offline stays goose's user.
        last = last.max(users).max(1);
        steps.push(format!("{last},{secs}s"));
    }
    last = last.max(1);
    let hold = ctx.scenario.duration.0 / 1_000_000 + ctx.scenario.drain.0 / 1_000_000 + 30;
    steps.push(format!("{last},{hold}s"));
    steps.push("0,0s".to_string());
    (steps.join(";"), last as usize)
}

pub fn build(ctx: Arc<RunContext>) -> Result<(GooseAttack, Launches), GooseError> {
    let users = ctx.population.users();
    let seg = ctx.segment;
    let pod = pod_size(seg.members_of(seg.index, users));
    let (plan, planned) = test_plan(&ctx, pod);
    let launches = Launches {
        launched: Arc::new(AtomicUsize::new(0)),
        planned,
    };
    let start_ctx = ctx.clone();
    let launched = launches.launched.clone();
    let attach = transaction(move |user| {
        let ctx = start_ctx.clone();
        launched.fetch_add(1, Relaxed);
        Box::pin(async move {
            let first = (user.weighted_users_index as u32).saturating_mul(pod);
            let members = (first..first.saturating_add(pod))
                .map(|i| seg.nth(seg.index, i))
                .take_while(|&index| index < users && !ctx.finished.load(Relaxed))
                .filter_map(|index| VirtualUser::new(index, ctx.clone()))
                .collect();
            user.set_session_data(Seat(Arc::new(SeatState {
                pod: Mutex::new(members),
                done: AtomicBool::new(false),
            })));
            Ok(())
        })
    });
    let drive_ctx = ctx.clone();
    let drive = transaction(move |user| {
        let stop = drive_ctx.users_stop.clone();
        let drive_ctx = drive_ctx.clone();
        Box::pin(async move {
            if stop.is_cancelled() {
                tell_goose_done(user);
                tokio::time::sleep(STOPPED_POLL).await;
                return Ok(());
            }
            match take(user) {
                // Runs until the run is over; goose calls it once per user. A lone consumer
                // runs in goose's own task, as it always did, unless it lives on another shard.
                Some((seat, mut pod)) if pod.len() == 1 && drive_ctx.shards.count() == 1 => {
                    pod[0].drive().await;
                    put_back(&seat, pod);
                }
                // Each consumer of a pod runs as a task of its own, woken directly: polling
                // them through one combined future (FuturesUnordered) cost 15% more client CPU
                // per message at 3,000 messages/s, measured with one consumer per pod.
                Some((seat, pod)) if !pod.is_empty() => {
                    let running: Vec<_> = pod
                        .into_iter()
                        .map(|mut vu| {
                            let shard = drive_ctx.shards.of(vu.index());
                            drive_ctx.shards.spawn(shard, async move {
                                vu.drive().await;
                                vu
                            })
                        })
                        .collect();
                    let mut back = Vec::with_capacity(running.len());
                    for member in running {
                        if let Ok(vu) = member.await {
                            back.push(vu);
                        }
                    }
                    put_back(&seat, back);
                }
                // A goose user past the population (goose launches at least one).
                _ => stop.cancelled().await,
            }
            Ok(())
        })
    });
    let leave_ctx = ctx.clone();
    let leave = transaction(move |user| {
        let ctx = leave_ctx.clone();
        Box::pin(async move {
            if let Some((_, pod)) = take(user) {
                if ctx.shards.count() == 1 {
                    let mut leaving: FuturesUnordered<_> =
                        pod.into_iter().map(VirtualUser::finish).collect();
                    while leaving.next().await.is_some() {}
                } else {
                    // Closed on the shard whose driver its connection is registered with.
                    let leaving: Vec<_> = pod
                        .into_iter()
                        .map(|vu| ctx.shards.spawn(ctx.shards.of(vu.index()), vu.finish()))
                        .collect();
                    for vu in leaving {
                        let _ = vu.await;
                    }
                }
            }
            Ok(())
        })
    });

    let start_ctx = ctx.clone();
    let test_start = transaction(move |_| {
        let ctx = start_ctx.clone();
        Box::pin(async move {
            ctx.mark_started();
            Ok(())
        })
    });

    let scenario = GooseScenario::new("consumers")
        .register_transaction(Transaction::new(attach).set_name("attach").set_on_start())
        .register_transaction(Transaction::new(drive).set_name("drive"))
        .register_transaction(Transaction::new(leave).set_name("leave").set_on_stop());

    let attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(scenario)
        .test_start(Transaction::new(test_start).set_name("start"))
        // One shared HTTP client instead of one per user (goose builds 1,000s otherwise).
        .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())?
        .set_default(GooseDefault::Host, "http://127.0.0.1")?
        .set_default(GooseDefault::TestPlan, plan.as_str())?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoMetrics, true)?
        .set_default(GooseDefault::NoTransactionMetrics, true)?
        .set_default(GooseDefault::NoScenarioMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::NoStatusCodes, true)?
        .set_default(GooseDefault::Quiet, 1)?;
    Ok((*attack, launches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goose_user_carries_one_consumer_up_to_the_limit_then_a_pod() {
        assert_eq!(pod_size(0), 1);
        assert_eq!(pod_size(1), 1);
        assert_eq!(pod_size(GOOSE_USERS_MAX), 1);
        assert_eq!(pod_size(GOOSE_USERS_MAX + 1), 2);
        assert_eq!(pod_size(19_000), 19);
        assert_eq!(pod_size(1_000_000), 1_000);
        // Never more goose users than the limit.
        for users in [1_001u32, 2_500, 19_000, 99_999, 1_000_000] {
            assert!(users.div_ceil(pod_size(users)) <= GOOSE_USERS_MAX);
        }
    }
}
