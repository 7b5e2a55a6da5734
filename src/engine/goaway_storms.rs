//! Graceful reconnect storms carried out by the target: at each storm's time the reference
//! server's admin API is asked to send `goaway` to the storm's share of users. Owns the
//! timing of those requests; the server picks the users (`protocol::keyed`).

use super::context::RunContext;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Graceful reconnect storms are the server's to carry out: at each one's time, ask the
/// target (chatload's reference server admin API) to send `goaway` to the storm's users.
pub async fn run(ctx: Arc<RunContext>, ws_url: Option<String>, sending: CancellationToken) {
    let Some(admin) = ws_url.and_then(|u| super::admin::AdminClient::new(&u).ok()) else {
        return;
    };
    for storm in ctx.storms.iter().filter(|s| s.goaway) {
        tokio::select! {
            _ = tokio::time::sleep_until(ctx.instant_at(storm.at_us).into()) => {}
            _ = sending.cancelled() => return,
        }
        if admin
            .goaway(storm.pattern, storm.fraction, ctx.scenario.seed)
            .await
            .is_err()
        {
            ctx.recorders
                .local()
                .error(crate::metrics::ErrorKind::Http, || {
                    format!(
                        "the target at {} did not carry out the goaway storm (POST /admin/goaway)",
                        admin.base()
                    )
                });
        }
    }
}
