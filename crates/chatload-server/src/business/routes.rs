//! Where each business number's webhooks go. A whole run registers one URL per number; a run
//! split across machines (`--segment i/N`) registers one per segment, and each consumer's
//! statuses and inbound messages go to the segment that owns the consumer (user mod N), the
//! one that sent or will answer them. Owns the table; posting is `webhook`'s.

use rustc_hash::FxHashMap;
use std::sync::{Arc, RwLock};

/// One number's receivers: one URL, or one per segment (index = user mod len).
pub type Route = Arc<[Option<Arc<str>>]>;

#[derive(Default)]
pub struct WebhookRoutes {
    by_business: RwLock<FxHashMap<u32, Route>>,
}

/// A segment's place in a split run, as the registration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSlot {
    pub index: u32,
    pub count: u32,
}

impl WebhookRoutes {
    /// Registers `url` for `business`, for every consumer or for one segment's. A segment of
    /// a different split (another count) replaces the old table: a new run has begun.
    pub fn register(&self, business: u32, url: &str, segment: Option<SegmentSlot>) {
        let Ok(mut table) = self.by_business.write() else {
            return;
        };
        let url: Arc<str> = Arc::from(url);
        let route: Route = match segment {
            None => Arc::from(vec![Some(url)]),
            Some(SegmentSlot { index, count }) => {
                let mut slots: Vec<Option<Arc<str>>> = match table.get(&business) {
                    Some(old) if old.len() == count as usize => old.to_vec(),
                    _ => vec![None; count as usize],
                };
                if let Some(slot) = slots.get_mut(index as usize) {
                    *slot = Some(url);
                }
                Arc::from(slots)
            }
        };
        table.insert(business, route);
    }

    /// The receivers of one number's webhooks, if any registered.
    pub fn route(&self, business: u32) -> Option<Route> {
        self.by_business.read().ok()?.get(&business).cloned()
    }
}

/// Which of `route`'s receivers takes `user`'s events.
pub fn slot_index(route: &Route, user: u32) -> usize {
    user as usize % route.len().max(1)
}

/// The URL in `route` for `user`'s events.
pub fn slot_url(route: &Route, user: u32) -> Option<Arc<str>> {
    route.get(slot_index(route, user)).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl WebhookRoutes {
        /// Where one consumer's webhook for `business` goes, as the poster finds it.
        fn url_for(&self, business: u32, user: u32) -> Option<Arc<str>> {
            slot_url(&self.route(business)?, user)
        }
    }

    #[test]
    fn a_whole_run_sends_everything_to_one_url() {
        let r = WebhookRoutes::default();
        r.register(3, "http://a/webhook", None);
        for user in [0, 1, 7, 1000] {
            assert_eq!(r.url_for(3, user).as_deref(), Some("http://a/webhook"));
        }
        assert_eq!(r.url_for(4, 0), None);
    }

    #[test]
    fn segments_get_their_own_consumers() {
        let r = WebhookRoutes::default();
        let seg = |index| Some(SegmentSlot { index, count: 3 });
        r.register(0, "http://s0/webhook", seg(0));
        r.register(0, "http://s2/webhook", seg(2));
        assert_eq!(r.url_for(0, 3).as_deref(), Some("http://s0/webhook"));
        assert_eq!(r.url_for(0, 5).as_deref(), Some("http://s2/webhook"));
        // Segment 1 has not registered yet: its consumers' events have nowhere to go.
        assert_eq!(r.url_for(0, 4), None);
        r.register(0, "http://s1/webhook", seg(1));
        assert_eq!(r.url_for(0, 4).as_deref(), Some("http://s1/webhook"));
        // A later split into two starts a new table.
        r.register(
            0,
            "http://t1/webhook",
            Some(SegmentSlot { index: 1, count: 2 }),
        );
        assert_eq!(r.url_for(0, 1).as_deref(), Some("http://t1/webhook"));
        assert_eq!(r.url_for(0, 2), None);
    }
}
