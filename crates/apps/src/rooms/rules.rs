//! Who may join which room: the rooms a token names are its own; other rooms follow the
//! configured rules (allow, deny, or ask the application backend).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a rule decides for the rooms it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// The backend decides (a `subscribe` route event to `backend_url`).
    Ask,
}

/// One configured rule: `pattern=allow|deny|ask`, where the pattern is a room name or a prefix
/// ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomRule {
    pattern: String,
    verdict: Verdict,
}

impl RoomRule {
    pub fn new(pattern: &str, verdict: Verdict) -> Self {
        RoomRule {
            pattern: pattern.to_string(),
            verdict,
        }
    }

    fn matches(&self, room: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => self.pattern == room,
        }
    }
}

impl TryFrom<String> for RoomRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (pattern, verdict) = text
            .rsplit_once('=')
            .ok_or_else(|| format!("room rule {text:?} is not PATTERN=allow|deny|ask"))?;
        let verdict = match verdict.trim() {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            "ask" => Verdict::Ask,
            other => return Err(format!("room rule {text:?}: {other:?} is not allow, deny or ask")),
        };
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern[..pattern.len() - 1].contains('*') {
            return Err(format!(
                "room rule {text:?}: the pattern is a room name, or a prefix ending in a single `*`"
            ));
        }
        Ok(RoomRule::new(pattern, verdict))
    }
}

impl From<RoomRule> for String {
    fn from(rule: RoomRule) -> String {
        rule.to_string()
    }
}

impl fmt::Display for RoomRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Ask => "ask",
        };
        write!(f, "{}={verdict}", self.pattern)
    }
}

/// Who is asking: the claims of the connection's token that rooms are made of.
pub struct Member<'a> {
    pub user_id: &'a str,
    pub branch_id: Option<&'a str>,
    pub role: Option<&'a str>,
}

/// The rooms a connection joins when it opens: its user, its branch, its role in its branch.
pub fn own_rooms(member: &Member) -> Vec<String> {
    let mut rooms = vec![format!("user:{}", member.user_id)];
    if let Some(branch) = member.branch_id {
        rooms.push(format!("branch:{branch}"));
        if let Some(role) = member.role {
            rooms.push(format!("role:{role}:{branch}"));
        }
    }
    rooms
}

/// Decides a subscription: `Err` carries the reason a denied room is refused.
pub fn decide(room: &str, member: &Member, rules: &[RoomRule]) -> Result<Verdict, String> {
    let own = |what: &str, allowed: bool| {
        if allowed {
            Ok(Verdict::Allow)
        } else {
            Err(format!("{room} is not your {what}"))
        }
    };
    if let Some(user) = room.strip_prefix("user:") {
        return own("user room", user == member.user_id);
    }
    if let Some(branch) = room.strip_prefix("branch:") {
        return own("branch", Some(branch) == member.branch_id);
    }
    if let Some(rest) = room.strip_prefix("role:") {
        let mine = match (member.role, member.branch_id) {
            (Some(role), Some(branch)) => rest == format!("{role}:{branch}"),
            _ => false,
        };
        return own("role in your branch", mine);
    }
    match rules.iter().find(|rule| rule.matches(room)).map(|rule| rule.verdict) {
        Some(Verdict::Deny) => Err(format!("subscribing to {room} is not allowed")),
        Some(verdict) => Ok(verdict),
        None => Err(format!("no rule allows subscribing to {room}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Member<'static> {
        Member {
            user_id: "ada",
            branch_id: Some("b1"),
            role: Some("manager"),
        }
    }

    /// A token's own rooms are allowed; another user's, branch's or role's are not, whatever
    /// the rules say; other rooms follow the first matching rule and are denied when none does.
    #[test]
    fn decisions() {
        let rules: Vec<RoomRule> = ["order:*=allow", "machine:secret=deny", "machine:*=ask", "*=deny"]
            .into_iter()
            .map(|r| RoomRule::try_from(r.to_string()).unwrap())
            .collect();
        let m = ada();
        for room in ["user:ada", "branch:b1", "role:manager:b1", "order:7"] {
            assert_eq!(decide(room, &m, &rules), Ok(Verdict::Allow), "{room}");
        }
        for room in [
            "user:bob",
            "branch:b2",
            "role:admin:b1",
            "role:manager:b2",
            "machine:secret",
            "x",
        ] {
            assert!(decide(room, &m, &rules).is_err(), "{room}");
        }
        assert_eq!(decide("machine:m1", &m, &rules), Ok(Verdict::Ask));
        assert!(decide("order:1", &m, &[]).is_err(), "no rule: denied");
        let no_branch = Member {
            user_id: "ada",
            branch_id: None,
            role: Some("manager"),
        };
        assert!(decide("role:manager:", &no_branch, &rules).is_err());
        assert_eq!(own_rooms(&no_branch), ["user:ada"]);
        assert_eq!(own_rooms(&m), ["user:ada", "branch:b1", "role:manager:b1"]);
    }

    #[test]
    fn rules_parse_and_print() {
        let rule = RoomRule::try_from("order:*=allow".to_string()).unwrap();
        assert_eq!(rule.to_string(), "order:*=allow");
        for bad in ["order:*", "order:*=maybe", "=allow", "a*b=allow"] {
            assert!(RoomRule::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
