//! Business state machines: a broadcast campaign at its send rate, customer-initiated support
//! conversations (bot or human agent, interactive answers, late replies after the window) and
//! OTP arrivals. Every business action is an order for the business client, not a consumer.

use super::{Action, Event, Order, Schedule};
use crate::protocol::Recipient;
use crate::scenario::PatternKind;
use rand::Rng;

/// A late reply is sent this long after the window closed.
const LATE_MARGIN_US: u64 = 1_000_000;

impl Schedule {
    fn business_number(&mut self) -> u32 {
        let n = self.scenario.businesses.count.max(1);
        self.rng.random_range(0..n)
    }

    pub(super) fn broadcast(&mut self, t: u64, pattern: u16, index: u32) -> Option<Order> {
        let PatternKind::BusinessBroadcast {
            send_rate,
            marketing,
            ..
        } = self.scenario.patterns[pattern as usize].kind
        else {
            return None;
        };
        let recipients = &self.campaign[pattern as usize];
        let to = *recipients.get(index as usize)?;
        if (index as usize + 1) < recipients.len() {
            // A campaign goes out at a steady rate, as bulk senders pace it.
            let next = t + (1e6 / send_rate.max(1e-9)) as u64;
            self.push(
                next,
                Event::Broadcast {
                    pattern,
                    index: index + 1,
                },
            );
        }
        let business = self.business_number();
        let marketing = self.rng.random::<f64>() < marketing;
        Some(self.order(
            t,
            pattern,
            business,
            Recipient::User(to),
            Action::Template {
                marketing,
                otp: false,
            },
        ))
    }

    pub(super) fn support_start(&mut self, t: u64, pattern: u16) -> Option<Order> {
        let dt = self.next_arrival(pattern);
        self.push(t + dt, Event::SupportStart { pattern });
        if !self.keep_at_rate(t) {
            return None;
        }
        let PatternKind::SupportConversation { bot, .. } =
            self.scenario.patterns[pattern as usize].kind
        else {
            return None;
        };
        let customer = self.rng.random_range(0..self.population.users());
        if !self.profile.eligible(customer, t) {
            return None;
        }
        let business = self.business_number();
        let agent = self.rng.random::<f64>() >= bot;
        let turns = self.count(pattern);
        self.support_customer(t, pattern, (customer, business), turns, agent, false)
    }

    pub(super) fn support_customer(
        &mut self,
        t: u64,
        pattern: u16,
        (customer, business): (u32, u32),
        turns_left: u32,
        agent: bool,
        interactive: bool,
    ) -> Option<Order> {
        if !self.profile.eligible(customer, t) {
            return None;
        }
        self.last_customer_message.insert((business, customer), t);
        let order = self.order(
            t,
            pattern,
            customer,
            Recipient::Business(business),
            Action::CustomerMessage { interactive },
        );
        let think = self.samplers[pattern as usize].think[usize::from(agent)]
            .sample(&mut self.rng)
            .max(1.0) as u64;
        if agent {
            self.push(
                t + think / 2,
                Event::SupportMarkRead {
                    pattern,
                    customer,
                    business,
                    of: order.id,
                },
            );
        }
        self.push(
            t + think,
            Event::SupportAnswer {
                pattern,
                customer,
                business,
                turns_left,
                agent,
                of: order.id,
                asked_at: t,
            },
        );
        Some(order)
    }

    pub(super) fn support_answer(
        &mut self,
        t: u64,
        pattern: u16,
        (customer, business): (u32, u32),
        turns_left: u32,
        agent: bool,
        (_of, asked_at): (u64, u64),
    ) -> Option<Order> {
        let PatternKind::SupportConversation {
            interactive, late, ..
        } = self.scenario.patterns[pattern as usize].kind
        else {
            return None;
        };
        let ask_choice = self.rng.random::<f64>() < interactive;
        if turns_left > 1 {
            let wait = if ask_choice {
                self.samplers[pattern as usize].think[2]
                    .sample(&mut self.rng)
                    .max(1.0) as u64
            } else {
                self.gap(pattern)
            };
            self.push(
                t + wait,
                Event::SupportCustomer {
                    pattern,
                    customer,
                    business,
                    turns_left: turns_left - 1,
                    agent,
                    interactive: ask_choice,
                },
            );
        } else if self.rng.random::<f64>() < late {
            // One more reply after the customer's last message has aged out of the window.
            let window = self.scenario.businesses.window.0;
            self.push(
                asked_at + window + LATE_MARGIN_US,
                Event::SupportLate {
                    pattern,
                    customer,
                    business,
                },
            );
        }
        Some(self.order(
            t,
            pattern,
            business,
            Recipient::User(customer),
            Action::Reply {
                interactive: ask_choice,
            },
        ))
    }

    /// The reply after the window, unless the customer wrote again since (a new window).
    pub(super) fn support_late(
        &mut self,
        t: u64,
        pattern: u16,
        customer: u32,
        business: u32,
    ) -> Option<Order> {
        let window = self.scenario.businesses.window.0;
        let last = self
            .last_customer_message
            .get(&(business, customer))
            .copied();
        if last.is_some_and(|m| m + window + LATE_MARGIN_US / 2 > t) {
            return None;
        }
        Some(self.order(
            t,
            pattern,
            business,
            Recipient::User(customer),
            Action::LateReply,
        ))
    }

    pub(super) fn otp(&mut self, t: u64, pattern: u16) -> Option<Order> {
        let dt = self.next_arrival(pattern);
        self.push(t + dt, Event::Otp { pattern });
        if !self.keep_at_rate(t) {
            return None;
        }
        let user = self.rng.random_range(0..self.population.users());
        if !self.profile.eligible(user, t) {
            return None;
        }
        let business = self.business_number();
        Some(self.order(
            t,
            pattern,
            business,
            Recipient::User(user),
            Action::Template {
                marketing: false,
                otp: true,
            },
        ))
    }
}
