//! Live counters (PROTOCOLS.md §3): RPC bodies, metadata, history, and socket frames.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A counter operation, by its wire name (`counter.<op>` over HTTP, `type` over the socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    Increment,
    Decrement,
    SetValue,
    Reset,
    GetValue,
    GetMetadata,
    GetHistory,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::Increment,
        Op::Decrement,
        Op::SetValue,
        Op::Reset,
        Op::GetValue,
        Op::GetMetadata,
        Op::GetHistory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Increment => "increment",
            Op::Decrement => "decrement",
            Op::SetValue => "setValue",
            Op::Reset => "reset",
            Op::GetValue => "getValue",
            Op::GetMetadata => "getMetadata",
            Op::GetHistory => "getHistory",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether the operation changes the counter (and so is stored and broadcast).
    pub fn is_mutation(self) -> bool {
        matches!(self, Op::Increment | Op::Decrement | Op::SetValue | Op::Reset)
    }

    /// `increment, decrement, …` for error messages.
    pub fn list() -> String {
        Op::ALL.map(Op::name).join(", ")
    }
}

/// The fields an operation may carry, from an RPC body or a socket frame.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Args {
    pub name: Option<String>,
    pub amount: Option<i64>,
    pub value: Option<i64>,
    pub limit: Option<u32>,
}

/// A counter's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// A stable number derived from the name.
    pub id: u64,
    pub name: String,
    pub value: i64,
    pub created_at: String,
    pub updated_at: String,
    pub operation_count: u64,
}

/// What a mutation returns over HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    pub value: i64,
    pub previous_value: i64,
    pub metadata: Metadata,
}

/// One entry of a counter's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub op: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    pub value: i64,
    pub previous_value: i64,
    pub timestamp: String,
}

/// The broadcast every socket of a counter receives after a stored mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: i64,
    pub previous_value: i64,
    pub metadata: Metadata,
    pub timestamp: String,
}

/// A socket frame asking for an operation: `{"type":"increment","amount":1,"id":"c1"}`.
#[derive(Clone, Debug, Deserialize)]
pub struct SocketRequest {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Value,
    #[serde(flatten)]
    pub args: Args,
}

/// The stable id of the counter called `name`: FNV-1a, cut to 53 bits so JavaScript numbers
/// hold it exactly.
pub fn counter_id(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash & ((1 << 53) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
            assert_eq!(serde_json::to_value(op).unwrap(), op.name());
        }
        assert_eq!(Op::from_name("explode"), None);
    }

    #[test]
    fn socket_request_parses_with_any_id() {
        let r: SocketRequest = serde_json::from_str(r#"{"type":"increment","amount":5,"id":"c1"}"#).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.args.amount, r.id.as_str()),
            ("increment", Some(5), Some("c1"))
        );
        let r: SocketRequest = serde_json::from_str(r#"{"type":"reset","id":7}"#).unwrap();
        assert_eq!(r.id, 7);
    }

    #[test]
    fn ids_are_stable_and_js_safe() {
        assert_eq!(counter_id("my-counter"), counter_id("my-counter"));
        assert_ne!(counter_id("a"), counter_id("b"));
        assert!(counter_id("anything") < (1 << 53));
    }
}
