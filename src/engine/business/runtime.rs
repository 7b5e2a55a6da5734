//! The business side of a running run: chatload's API client and its webhook receiver,
//! started when a scenario has business patterns, after the target has been told the limits
//! and where to post webhooks. Owns starting and holding them; the sending is `client`'s, the
//! joining of webhooks `webhook`'s.

use super::super::context::RunContext;
use std::sync::Arc;

/// The business side of a run: chatload's API client and its webhook receiver.
pub struct BusinessRuntime {
    pub client: Arc<super::client::BusinessClient>,
    pub task: tokio::task::JoinHandle<()>,
    pub receiver: super::webhook::WebhookReceiver,
}

/// Starts the webhook receiver, tells the target the limits and where to post webhooks, and
/// starts the API client, when the scenario has business patterns.
pub async fn start(
    ctx: &Arc<RunContext>,
    ws_url: &str,
    listen: Option<&str>,
) -> Result<Option<BusinessRuntime>, String> {
    // The error is the whole sentence for the user; the run wraps it as a set-up error.
    let s = &ctx.scenario;
    if !s.patterns.iter().any(|p| p.kind.is_business()) {
        return Ok(None);
    }
    let base = super::http_base(ws_url);
    let listen = listen.unwrap_or("127.0.0.1:0");
    let receiver = super::webhook::start(ctx.clone(), listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen for business webhooks at {listen} ({e}); choose another --webhook-listen"
            )
        })?;
    let admin = super::super::admin::AdminClient::new(ws_url)?;
    let b = s.businesses;
    let setup = |what: &str, e: String| {
        format!(
            "the target's business API at {base} refused {what} ({e}); business patterns need chatload's reference server or one that speaks its admin API"
        )
    };
    admin
        .configure(&super::super::admin::BusinessLimits {
            throughput_mps: b.throughput_mps,
            messaging_limit: b.messaging_limit,
            window_ms: b.window.0 / 1000,
            pair_interval_ms: b.pair_interval.0 / 1000,
            pair_burst: b.pair_burst,
        })
        .await
        .map_err(|e| setup("the limits", e))?;
    for n in 0..b.count {
        admin
            .register_webhook(n, &receiver.url(), ctx.segment)
            .await
            .map_err(|e| setup("the webhook registration", e))?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(65_536);
    ctx.open_business_orders(tx);
    let client = Arc::new(super::client::BusinessClient::new(ctx.clone(), base)?);
    Ok(Some(BusinessRuntime {
        task: tokio::spawn(client.clone().run(rx)),
        client,
        receiver,
    }))
}
