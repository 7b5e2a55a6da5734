//! The mapping from chatload's user and group numbers to a messaging system's own ids
//! (Matrix user and room ids, channel ids): a JSON file, written by `chatload setup` or by
//! hand, read once before a run. Users and groups map to one id each; a direct
//! conversation between two users (a Matrix room of two, a DM channel) to an id of its own.
//! Owns the file's form, its bounds and the lookups both ways; not how ids are made.
//!
//! ```json
//! { "users": { "0": "@u0:example.org" }, "groups": { "0": "!abc:example.org" },
//!   "direct": { "0-5": "!def:example.org" } }
//! ```

use std::collections::BTreeMap;
use std::collections::HashMap as FxHashMap;
use std::path::Path;

/// The largest ids file read, and the longest id in it.
const MAX_FILE: u64 = 256 << 20;
const MAX_ID: usize = 1024;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdFile {
    #[serde(default)]
    pub users: BTreeMap<u32, String>,
    #[serde(default)]
    pub groups: BTreeMap<u32, String>,
    /// Keyed "a-b" with a < b.
    #[serde(default)]
    pub direct: BTreeMap<String, String>,
}

/// The ids, looked up by number and (for what the system sends back) by id.
#[derive(Debug, Default)]
pub struct IdMap {
    users: FxHashMap<u32, String>,
    groups: FxHashMap<u32, String>,
    direct: FxHashMap<(u32, u32), String>,
    user_of: FxHashMap<String, u32>,
    /// A conversation id → the group, or the two users of a direct conversation.
    conversation_of: FxHashMap<String, Conversation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation {
    Group(u32),
    Direct(u32, u32),
}

/// The key of the direct conversation between `a` and `b`, in either order.
pub fn direct_key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl IdMap {
    /// Reads and checks the file: one sentence naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<IdMap, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the ids file {shown}: {e}"))?
            .len();
        if size > MAX_FILE {
            return Err(format!(
                "the ids file {shown} is {size} bytes; chatload reads at most {MAX_FILE}"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the ids file {shown}: {e}"))?;
        let file: IdFile = serde_json::from_str(&text)
            .map_err(|e| format!("the ids file {shown} is not an ids file: {e}"))?;
        IdMap::from_file(file).map_err(|e| format!("the ids file {shown}: {e}"))
    }

    pub fn from_file(file: IdFile) -> Result<IdMap, String> {
        let mut map = IdMap::default();
        let check = |what: String, id: &str| {
            if id.is_empty() || id.len() > MAX_ID {
                Err(format!(
                    "{what} has an id of {} bytes (1 to {MAX_ID})",
                    id.len()
                ))
            } else {
                Ok(())
            }
        };
        for (u, id) in file.users {
            check(format!("user {u}"), &id)?;
            if let Some(other) = map.user_of.insert(id.clone(), u) {
                return Err(format!("users {other} and {u} have the same id {id}"));
            }
            map.users.insert(u, id);
        }
        for (g, id) in file.groups {
            check(format!("group {g}"), &id)?;
            if map
                .conversation_of
                .insert(id.clone(), Conversation::Group(g))
                .is_some()
            {
                return Err(format!("the conversation id {id} is given twice"));
            }
            map.groups.insert(g, id);
        }
        for (pair, id) in file.direct {
            let parsed = pair
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
            let Some((a, b)) = parsed.filter(|(a, b)| a != b) else {
                return Err(format!(
                    "direct key \"{pair}\" is not two user numbers (\"3-17\")"
                ));
            };
            check(format!("direct {pair}"), &id)?;
            let key = direct_key(a, b);
            if map
                .conversation_of
                .insert(id.clone(), Conversation::Direct(key.0, key.1))
                .is_some()
            {
                return Err(format!("the conversation id {id} is given twice"));
            }
            map.direct.insert(key, id);
        }
        Ok(map)
    }

    pub fn user(&self, u: u32) -> Option<&str> {
        self.users.get(&u).map(String::as_str)
    }

    pub fn group(&self, g: u32) -> Option<&str> {
        self.groups.get(&g).map(String::as_str)
    }

    pub fn direct(&self, a: u32, b: u32) -> Option<&str> {
        self.direct.get(&direct_key(a, b)).map(String::as_str)
    }

    pub fn user_of(&self, id: &str) -> Option<u32> {
        self.user_of.get(id).copied()
    }

    pub fn conversation_of(&self, id: &str) -> Option<Conversation> {
        self.conversation_of.get(id).copied()
    }

    /// The first user, group or (when `pairs`) contact pair of a population the map has no
    /// id for.
    pub fn missing<'a>(
        &self,
        users: u32,
        groups: usize,
        pairs: bool,
        mut contacts: impl FnMut(u32) -> &'a [u32],
    ) -> Option<String> {
        if let Some(u) = (0..users).find(|u| !self.users.contains_key(u)) {
            return Some(format!("user {u}"));
        }
        if let Some(g) = (0..groups as u32).find(|g| !self.groups.contains_key(g)) {
            return Some(format!("group {g}"));
        }
        for u in (0..users).filter(|_| pairs) {
            if let Some(c) = contacts(u).iter().find(|c| self.direct(u, **c).is_none()) {
                return Some(format!("the direct conversation of users {u} and {c}"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Result<IdMap, String> {
        IdMap::from_file(serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn ids_are_found_both_ways() {
        let m = map(
            r#"{"users":{"0":"@u0:x","5":"@u5:x"},"groups":{"1":"!g:x"},"direct":{"5-0":"!d:x"}}"#,
        )
        .unwrap();
        assert_eq!(m.user(5), Some("@u5:x"));
        assert_eq!(m.user_of("@u0:x"), Some(0));
        assert_eq!(m.direct(0, 5), Some("!d:x"));
        assert_eq!(m.direct(5, 0), Some("!d:x"));
        assert_eq!(m.conversation_of("!d:x"), Some(Conversation::Direct(0, 5)));
        assert_eq!(m.conversation_of("!g:x"), Some(Conversation::Group(1)));
        assert_eq!(m.conversation_of("!nope:x"), None);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(
            map(r#"{"direct":{"3":"!d:x"}}"#)
                .unwrap_err()
                .contains("two user numbers")
        );
        assert!(
            map(r#"{"users":{"1":"@a:x","2":"@a:x"}}"#)
                .unwrap_err()
                .contains("same id")
        );
        assert!(
            map(r#"{"groups":{"1":"!a:x"},"direct":{"1-2":"!a:x"}}"#)
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            map(r#"{"users":{"1":""}}"#)
                .unwrap_err()
                .contains("1 to 1024")
        );
        let m = map(r#"{"users":{"0":"@u0:x","1":"@u1:x"},"groups":{}}"#).unwrap();
        let contacts = [vec![1u32], vec![0u32]];
        assert_eq!(
            m.missing(2, 0, true, |u| &contacts[u as usize]).as_deref(),
            Some("the direct conversation of users 0 and 1")
        );
        assert_eq!(m.missing(2, 0, false, |u| &contacts[u as usize]), None);
        assert_eq!(m.missing(3, 0, true, |_| &[]).as_deref(), Some("user 2"));
    }
}
