//! goose as the virtual-user lifecycle: one goose user per online consumer, launched on the
//! profile's ramp, each running its [`VirtualUser`] in one transaction until the run stops it
//! (`RunContext::users_stop`), and closing it on stop. Configured from code only; never reads
//! the process arguments.

use super::context::RunContext;
use super::vu::VirtualUser;
use goose::client::GooseClientBuilder;
use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::goose::{
    GooseUser, Scenario as GooseScenario, Transaction, TransactionFunction, TransactionResult,
};
use goose::{GooseAttack, GooseError};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// After the run has stopped its users, goose calls the drive transaction again until it
/// delivers its own stop to each user; each such call waits this long instead of spinning.
const STOPPED_POLL: Duration = Duration::from_millis(50);

/// Boxed, so a user's state is held once on the heap rather than inside the slot and again
/// inside every running transaction's future.
#[derive(Clone)]
struct VuSlot(Arc<Mutex<Option<Box<VirtualUser>>>>);

fn take(user: &GooseUser) -> Option<(VuSlot, Box<VirtualUser>)> {
    let slot = user.get_session_data::<VuSlot>()?.clone();
    let vu = slot.0.lock().ok()?.take()?;
    Some((slot, vu))
}

fn put_back(slot: &VuSlot, vu: Box<VirtualUser>) {
    if let Ok(mut s) = slot.0.lock() {
        *s = Some(vu);
    }
}

type TxFuture<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

fn transaction<F>(f: F) -> TransactionFunction
where
    F: for<'r> Fn(&'r mut GooseUser) -> TxFuture<'r> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// goose's launch plan: the profile's envelope in whole seconds (goose's resolution),
/// rounded down so goose launches users no later than they are due, then a long hold;
/// chatload ends the run itself through goose's killswitch.
pub fn test_plan(ctx: &RunContext) -> String {
    let mut steps = Vec::new();
    let mut last = 0u32;
    let seg = ctx.segment;
    for (users, length_us) in ctx.profile.launch_envelope() {
        let users = seg.members_of(seg.index, users);
        let secs = length_us / 1_000_000;
        if users > last || steps.is_empty() {
            steps.push(format!("{},{}s", users.max(1), secs));
        } else {
            steps.push(format!("{},{}s", last.max(1), secs));
        }
        last = last.max(users);
    }
    let hold = ctx.scenario.duration.0 / 1_000_000 + ctx.scenario.drain.0 / 1_000_000 + 30;
    steps.push(format!("{},{}s", last.max(1), hold));
    steps.push("0,0s".to_string());
    steps.join(";")
}

pub fn build(ctx: Arc<RunContext>) -> Result<GooseAttack, GooseError> {
    let users = ctx.population.users();
    let start_ctx = ctx.clone();
    let attach = transaction(move |user| {
        let ctx = start_ctx.clone();
        Box::pin(async move {
            let seg = ctx.segment;
            let index = seg.nth(seg.index, user.weighted_users_index as u32);
            if index < users
                && let Some(vu) = VirtualUser::new(index, ctx)
            {
                user.set_session_data(VuSlot(Arc::new(Mutex::new(Some(Box::new(vu))))));
            }
            Ok(())
        })
    });
    let drive_ctx = ctx.clone();
    let drive = transaction(move |user| {
        let stop = drive_ctx.users_stop.clone();
        Box::pin(async move {
            if stop.is_cancelled() {
                tokio::time::sleep(STOPPED_POLL).await;
                return Ok(());
            }
            match take(user) {
                Some((slot, mut vu)) => {
                    vu.drive().await;
                    put_back(&slot, vu);
                }
                // A goose user past the population (goose launches at least one).
                None => stop.cancelled().await,
            }
            Ok(())
        })
    });
    let leave = transaction(move |user| {
        Box::pin(async move {
            if let Some((_, vu)) = take(user) {
                Box::pin((*vu).finish()).await;
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
        .set_default(GooseDefault::TestPlan, test_plan(&ctx).as_str())?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoMetrics, true)?
        .set_default(GooseDefault::NoTransactionMetrics, true)?
        .set_default(GooseDefault::NoScenarioMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::NoStatusCodes, true)?
        .set_default(GooseDefault::Quiet, 1)?;
    Ok(*attack)
}
