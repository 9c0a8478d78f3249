//! The device gateway's two shared objects: the [`Directory`] of every device ever seen (which
//! also holds the dashboard sockets), and the [`Tags`] registry (tag → user, and the tags
//! offered for registration).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_proto::device::{Tag, User, dashboard};
use switchboard_runtime::{
    Context, Frame, HookResult, ListOptions, NewSocket, Object, SocketId, SocketRef, Subscription, json_frame,
};

use super::{DASHBOARD_TOPIC, SINGLETON};
use crate::http::Refusal;

/// How a device stands, as it last reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub device_id: String,
    pub online: bool,
    /// Its live socket while online: the gateway's record of it gives the freshest last-seen.
    pub socket: Option<SocketId>,
    pub last_seen: Option<i64>,
    pub config_version: u64,
    pub config_applied_version: u64,
    /// The newest timestamp among its scans (to skip devices when listing scans).
    pub newest_scan_ms: Option<i64>,
}

/// Every device ever seen, stored one key per device (`d:{id}`).
pub struct Directory {
    devices: BTreeMap<String, Summary>,
}

#[derive(Serialize, Deserialize)]
pub enum DirectoryRequest {
    /// A device's news (answered with nothing).
    Report(Summary),
    List,
}

impl Object for Directory {
    const CLASS: &'static str = "device_directory";
    type Request = DirectoryRequest;
    type Reply = Vec<Summary>;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let rows: Vec<(String, Summary)> = ctx.storage().list(ListOptions::prefix("d:")).await?;
        Ok(Directory {
            devices: rows.into_iter().map(|(_, s)| (s.device_id.clone(), s)).collect(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: DirectoryRequest) -> HookResult<Vec<Summary>> {
        match request {
            DirectoryRequest::Report(summary) => {
                ctx.storage().put(&format!("d:{}", summary.device_id), &summary)?;
                self.devices.insert(summary.device_id.clone(), summary);
                Ok(Vec::new())
            }
            DirectoryRequest::List => Ok(self.devices.values().cloned().collect()),
        }
    }

    /// A dashboard (authorized by its route): the live feed, after the tags that wait for a
    /// user now.
    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let pending = match ctx.call::<Tags>(SINGLETON, TagsRequest::Pending).await? {
            Ok(TagsReply::Pending(pending)) => pending,
            _ => Vec::new(),
        };
        let socket = ctx.accept(socket, &[])?;
        for (tag_id, device_id) in pending {
            ctx.send_json(&socket, &dashboard::pending_registration(&device_id, &tag_id));
        }
        ctx.subscribe(socket.id(), DASHBOARD_TOPIC, Subscription::default())?;
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, _frame: Frame) -> HookResult {
        let error = "the dashboard socket only listens; change things through the HTTP API";
        ctx.send(&socket, json_frame(&switchboard_proto::device::error_reply(error)));
        Ok(())
    }
}

/// The tag registry: tag → user (`t:{tag}`), and unknown tags scanned in registration mode,
/// with the device that offered them (`p:{tag}`), until they are registered.
pub struct Tags {
    users: BTreeMap<String, User>,
    pending: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
pub enum TagsRequest {
    /// The users of these tags, in order. With `offered_by` (a device in registration mode),
    /// the unknown ones wait for registration from now on — stored before the device stores
    /// its scans, so a dashboard that connects once the device is answered sees them.
    Lookup {
        tags: Vec<String>,
        offered_by: Option<String>,
    },
    Put(Tag),
    Delete(String),
    List,
    Pending,
}

#[derive(Serialize, Deserialize)]
pub enum TagsReply {
    Users(Vec<Option<User>>),
    Tag(Tag),
    Deleted,
    Tags(Vec<Tag>),
    /// `(tagId, deviceId)` of tags waiting for a user.
    Pending(Vec<(String, String)>),
}

impl Object for Tags {
    const CLASS: &'static str = "device_tags";
    type Request = TagsRequest;
    type Reply = Result<TagsReply, Refusal>;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let users: Vec<(String, User)> = ctx.storage().list(ListOptions::prefix("t:")).await?;
        let pending: Vec<(String, String)> = ctx.storage().list(ListOptions::prefix("p:")).await?;
        Ok(Tags {
            users: users.into_iter().map(|(k, u)| (k[2..].to_string(), u)).collect(),
            pending: pending.into_iter().map(|(k, d)| (k[2..].to_string(), d)).collect(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: TagsRequest) -> HookResult<Self::Reply> {
        Ok(Ok(match request {
            TagsRequest::Lookup { tags, offered_by } => {
                let users: Vec<Option<User>> = tags.iter().map(|t| self.users.get(t).cloned()).collect();
                if let Some(device_id) = offered_by {
                    for (tag_id, _) in tags.iter().zip(&users).filter(|(_, user)| user.is_none()) {
                        ctx.storage().put(&format!("p:{tag_id}"), &device_id)?;
                        self.pending.insert(tag_id.clone(), device_id.clone());
                    }
                }
                TagsReply::Users(users)
            }
            TagsRequest::Put(tag) => {
                let user = User {
                    user_id: tag.user_id.clone(),
                    name: tag.name.clone(),
                };
                ctx.storage().put(&format!("t:{}", tag.tag_id), &user)?;
                if self.pending.remove(&tag.tag_id).is_some() {
                    ctx.storage().delete(&format!("p:{}", tag.tag_id));
                }
                self.users.insert(tag.tag_id.clone(), user);
                TagsReply::Tag(tag)
            }
            TagsRequest::Delete(tag_id) => {
                if self.users.remove(&tag_id).is_none() {
                    return Ok(Err(Refusal::NotFound(format!("tag {tag_id:?} is not registered"))));
                }
                ctx.storage().delete(&format!("t:{tag_id}"));
                TagsReply::Deleted
            }
            TagsRequest::List => TagsReply::Tags(
                self.users
                    .iter()
                    .map(|(tag_id, u)| Tag {
                        tag_id: tag_id.clone(),
                        user_id: u.user_id.clone(),
                        name: u.name.clone(),
                    })
                    .collect(),
            ),
            TagsRequest::Pending => {
                TagsReply::Pending(self.pending.iter().map(|(t, d)| (t.clone(), d.clone())).collect())
            }
        }))
    }
}
