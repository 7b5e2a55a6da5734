//! Transports: how a virtual user reaches the target. This version speaks the chatload
//! WebSocket protocol (`ws`); MQTT and HTTP transports plug in beside it.

pub mod ws;
