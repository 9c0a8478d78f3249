//! The actor of one live object: its event loop, hibernation, and restarts from storage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::context::Context;
use crate::object::{Object, SocketRef};
use crate::registry::{CallError, Event, Runtime, Slot, SlotCore};
use crate::storage::view::Storage;
use crate::storage::{ObjectWrites, WriteOp};
use crate::store::{Health, Output, fail_all};

/// Most delivery attempts of one alarm; after these it is dropped (and logged).
const ALARM_ATTEMPTS: u32 = 6;

/// Runs one incarnation of an object until it hibernates or the runtime shuts down.
pub(crate) async fn run<O: Object>(rt: Runtime, slot: Arc<Slot<O>>) {
    let inner = rt.inner.clone();
    inner.stats.wakes.fetch_add(1, Ordering::Relaxed);
    inner.stats.live_objects.fetch_add(1, Ordering::Relaxed);
    // Ends the incarnation on every path out, a panic in the object included.
    let mut exit = Exit {
        rt: &rt,
        slot: &slot,
        hibernated: false,
    };
    let mut ctx = new_context(&rt, &slot.core);
    let mut object: Option<O> = None;
    let hibernate_after = inner.config.hibernate_after;
    let idle = tokio::time::sleep(hibernate_after);
    tokio::pin!(idle);
    loop {
        let Some(event) = slot.next_event() else {
            tokio::select! {
                biased;
                _ = slot.event_queued() => {}
                _ = &mut idle => {
                    if slot.try_hibernate() {
                        exit.hibernated = true;
                        return;
                    }
                }
                _ = inner.shutdown.cancelled() => return,
            }
            continue;
        };
        if ctx.health.is_poisoned() {
            // A commit carrying this instance's writes failed: its memory may hold state that
            // storage does not. Start again from storage.
            object = None;
            ctx = new_context(&rt, &slot.core);
            inner.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
        if object.is_none() {
            match O::start(&mut ctx).await {
                Ok(started) => object = Some(started),
                Err(e) => {
                    tracing::error!(address = %slot.core.address, error = %e, "object failed to start");
                    ctx.storage.reset();
                    fail_all(std::mem::take(&mut ctx.outputs));
                    fail_event(&rt, &slot.core, event, CallError::Start(e));
                    continue;
                }
            }
        }
        let obj = object.as_mut().expect("started above");
        handle(&rt, obj, &mut ctx, event).await;
        finish_event(&rt, &slot.core, &mut ctx);
        idle.as_mut().reset(Instant::now() + hibernate_after);
    }
}

/// How an incarnation ends: hibernated (the slot may go), or abandoned (queued events fail).
struct Exit<'a, O: Object> {
    rt: &'a Runtime,
    slot: &'a Arc<Slot<O>>,
    hibernated: bool,
}

impl<O: Object> Drop for Exit<'_, O> {
    fn drop(&mut self) {
        let stats = &self.rt.inner.stats;
        stats.live_objects.fetch_sub(1, Ordering::Relaxed);
        if self.hibernated {
            stats.hibernations.fetch_add(1, Ordering::Relaxed);
            self.rt.remove_if_unused(&self.slot.core.address);
        } else {
            self.slot.abandon();
        }
    }
}

fn new_context(rt: &Runtime, core: &Arc<SlotCore>) -> Context {
    Context {
        core: core.clone(),
        settings: rt.inner.settings.clone(),
        storage: Storage::new(
            core.address.clone(),
            rt.inner.store.clone(),
            core.last_ticket.load(Ordering::Acquire),
        ),
        outputs: Vec::new(),
        health: Arc::new(Health::default()),
        alarm_change: None,
        alarms: rt.inner.alarms.clone(),
    }
}

async fn handle<O: Object>(rt: &Runtime, obj: &mut O, ctx: &mut Context, event: Event<O>) {
    match event {
        Event::Call(request, reply) => {
            let result = obj.on_request(ctx, request).await;
            ctx.outputs.push(Output::Reply(Box::new(move |released| {
                let _ = reply.send(if released {
                    Ok(result)
                } else {
                    Err(CallError::CommitFailed)
                });
            })));
        }
        Event::Connect(socket, reply) => {
            let id = socket.id();
            obj.on_connect(ctx, socket).await;
            let accepted = ctx.core.sockets.contains(id);
            ctx.outputs.push(Output::Reply(Box::new(move |released| {
                let _ = reply.send(if released {
                    Ok(accepted)
                } else {
                    Err(CallError::CommitFailed)
                });
            })));
        }
        Event::Message(conn, frame, done) => {
            // The gateway reads a socket's close only after its last frame, so the socket is
            // still the object's.
            obj.on_message(ctx, SocketRef { conn }, frame).await;
            let _ = done.send(());
        }
        Event::Close(id, code, reason, done) => {
            if let Some(conn) = ctx.core.sockets.conn(id) {
                obj.on_close(ctx, SocketRef { conn }, code, reason).await;
                ctx.core.sockets.remove(id);
            }
            let _ = done.send(());
        }
        Event::Alarm => {
            let now = switchboard_proto::time::now_ms();
            if ctx.get_alarm().is_none_or(|at| at > now) {
                return; // Moved or deleted since it was scheduled.
            }
            rt.inner.stats.alarms_fired.fetch_add(1, Ordering::Relaxed);
            match obj.on_alarm(ctx).await {
                Ok(()) => {
                    ctx.core.alarm_failures.store(0, Ordering::Relaxed);
                    if ctx.alarm_change.is_none() {
                        ctx.delete_alarm();
                    }
                }
                Err(e) => {
                    let failures = ctx.core.alarm_failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if ctx.alarm_change.is_some() {
                        // The handler set a new alarm before failing: that one stands.
                    } else if failures >= ALARM_ATTEMPTS {
                        tracing::error!(address = %ctx.core.address, error = %e, "alarm failed {failures} times; dropped");
                        ctx.core.alarm_failures.store(0, Ordering::Relaxed);
                        ctx.delete_alarm();
                    } else {
                        let backoff = 1000i64 << (failures - 1);
                        tracing::warn!(address = %ctx.core.address, error = %e, retry_in_ms = backoff, "alarm failed; retrying");
                        ctx.set_alarm(now + backoff);
                    }
                }
            }
        }
    }
}

fn fail_event<O: Object>(rt: &Runtime, core: &SlotCore, event: Event<O>, error: CallError) {
    match event {
        Event::Call(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Event::Connect(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Event::Message(_, _, done) | Event::Close(_, _, _, done) => {
            let _ = done.send(());
        }
        Event::Alarm => {
            // Keep the alarm: try again a little later.
            let retry = switchboard_proto::time::now_ms() + 5_000;
            rt.inner.alarms.set(&core.address, Some(retry));
        }
    }
}

/// Submits the event's writes as one ticket and holds its outputs until that ticket is durable.
fn finish_event(rt: &Runtime, core: &SlotCore, ctx: &mut Context) {
    let mut ops = ctx.storage.take_ops();
    if let Some(change) = ctx.alarm_change.take() {
        ops.push(WriteOp::SetAlarm(change));
        rt.inner.alarms.set(&core.address, change);
    }
    if ops.iter().any(|op| matches!(op, WriteOp::DeleteAll)) && !ops.iter().any(|op| matches!(op, WriteOp::SetAlarm(_)))
    {
        rt.inner.alarms.set(&core.address, None);
    }
    let outputs = std::mem::take(&mut ctx.outputs);
    if !ops.is_empty() {
        let writes = ObjectWrites {
            address: core.address.clone(),
            ops,
        };
        match rt.inner.store.submit(writes, ctx.health.clone()) {
            Ok(ticket) => {
                ctx.storage.last_ticket = ticket;
                core.last_ticket.store(ticket, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(address = %core.address, error = %e, "writes refused; outputs dropped");
                fail_all(outputs);
                return;
            }
        }
    }
    rt.inner.store.hold(ctx.storage.last_ticket, &ctx.health, outputs);
    ctx.storage.trim();
}
