//! Reading chatload's ids and people back from what a target wrote: both sides agree that a
//! message carries `cl:<id>` at the start of its text and that a user or group may be named
//! with its number inside (`"user-17"`). The client reads answers and gateway frames this
//! way; the reference server reads business sends this way.

/// chatload's message id from a value: a number, a decimal string, or text carrying the
/// `cl:<id>` token chatload puts at the start of every body it sends.
pub fn message_id(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => {
            if let Some(at) = s.find("cl:") {
                let digits: String = s[at + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                return digits.parse().ok();
            }
            s.trim().parse().ok()
        }
        _ => None,
    }
}

/// A user or group number from a value: a number, or the last run of digits in a string
/// (`"user-17"` is 17), so gateways that name users can be read.
pub fn number(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => {
            let end = s.rfind(|c: char| c.is_ascii_digit())? + 1;
            let start = s[..end]
                .rfind(|c: char| !c.is_ascii_digit())
                .map_or(0, |i| i + 1);
            s[start..end].parse().ok()
        }
        _ => None,
    }
}
