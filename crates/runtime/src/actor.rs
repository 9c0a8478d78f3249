//! The actor of one live object: its event loop, hibernation, and restarts from storage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::context::Context;
use crate::effect::outbox_address;
use crate::object::{HookError, Object, SocketRef};
use crate::registry::{CallError, Event, Runtime, Slot, SlotCore, topics_address};
use crate::storage::view::Storage;
use crate::storage::{ObjectWrites, WriteOp};
use crate::store::{Health, Output, fail_all};

/// Runs one incarnation of an object until it hibernates or the runtime shuts down.
pub(crate) async fn run<O: Object>(rt: Runtime, slot: Arc<Slot<O>>) {
    let inner = rt.inner.clone();
    inner.stats.live_objects.fetch_add(1, Ordering::Relaxed);
    inner.stats.bump(&inner.stats.wakes);
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
        if inner.shutdown.is_cancelled() {
            event.fail(CallError::ShuttingDown);
            continue;
        }
        if slot.core.stale.swap(false, Ordering::AcqRel) && object.is_some() {
            // Another node owned the object meanwhile: what this instance holds is old.
            object = None;
            ctx = new_context(&rt, &slot.core);
            inner.stats.bump(&inner.stats.evictions);
        }
        if ctx.health.is_poisoned() {
            // A commit carrying this instance's writes failed: its memory may hold state that
            // storage does not. Start again from storage.
            object = None;
            ctx = new_context(&rt, &slot.core);
            inner.stats.bump(&inner.stats.evictions);
        }
        if object.is_none() {
            match O::start(&mut ctx).await {
                Ok(started) => object = Some(started),
                Err(e) => {
                    tracing::error!(address = %slot.core.address, error = %e, "object failed to start");
                    discard(&mut ctx);
                    match event {
                        Event::Alarm => retry_alarm(&rt, &mut ctx),
                        other => other.fail(CallError::Start(e.to_string())),
                    }
                    continue;
                }
            }
        }
        let obj = object.as_mut().expect("started above");
        let is_alarm = matches!(event, Event::Alarm);
        if let Err(e) = handle(&rt, obj, &mut ctx, event).await {
            discard(&mut ctx);
            if e.keeps_instance {
                tracing::debug!(address = %slot.core.address, error = %e, "an event was refused");
            } else {
                // Memory may have run ahead of storage: drop the event's work and the instance.
                tracing::warn!(address = %slot.core.address, error = %e, "an event failed; its writes and outputs are discarded and the object restarts from storage");
                object = None;
            }
            inner.stats.bump(&inner.stats.hook_failures);
            if is_alarm {
                retry_alarm(&rt, &mut ctx);
            }
            continue;
        }
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
        if !self.hibernated {
            stats.changed.notify_waiters();
        }
        if self.hibernated {
            self.rt.remove_if_unused(&self.slot.core.address);
            stats.bump(&stats.hibernations);
        } else {
            self.slot.abandon();
        }
    }
}

fn new_context(rt: &Runtime, core: &Arc<SlotCore>) -> Context {
    Context {
        rt: rt.clone(),
        core: core.clone(),
        storage: Storage::new(
            core.address.clone(),
            rt.inner.store.clone(),
            core.last_ticket.load(Ordering::Acquire),
        ),
        outputs: Vec::new(),
        health: Arc::new(Health::default()),
        alarm_change: None,
        publishes: Vec::new(),
        effects: Vec::new(),
    }
}

/// Forgets everything the current event did that is not yet submitted.
fn discard(ctx: &mut Context) {
    ctx.storage.reset();
    ctx.alarm_change = None;
    ctx.publishes.clear();
    ctx.effects.clear();
    fail_all(std::mem::take(&mut ctx.outputs));
}

/// Tries the object's alarm again later, with backoff.
fn retry_alarm(rt: &Runtime, ctx: &mut Context) {
    let failures = ctx.core.alarm_failures.fetch_add(1, Ordering::Relaxed) + 1;
    let wait = rt.inner.config.alarm_retry.delay(failures);
    tracing::warn!(address = %ctx.core.address, failures, retry_in_ms = wait.as_millis() as u64, "alarm failed; retrying");
    ctx.set_alarm(rt.now_ms() + wait.as_millis() as i64);
    finish_event(rt, &ctx.core.clone(), ctx);
}

async fn handle<O: Object>(rt: &Runtime, obj: &mut O, ctx: &mut Context, event: Event<O>) -> Result<(), HookError> {
    match event {
        Event::Call(request, reply) => match obj.on_request(ctx, request).await {
            Ok(result) => {
                if let Some(reply) = reply {
                    ctx.outputs.push(Output::run(move |released| {
                        let _ = reply.send(if released {
                            Ok(result)
                        } else {
                            Err(CallError::CommitFailed)
                        });
                    }));
                }
            }
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(CallError::Failed(e.to_string())));
                }
                return Err(e);
            }
        },
        Event::Connect(socket, reply) => {
            let id = socket.id();
            if let Err(e) = obj.on_connect(ctx, *socket).await {
                ctx.core.sockets.remove(id);
                let _ = reply.send(Err(CallError::Failed(e.to_string())));
                return Err(e);
            }
            let accepted = ctx.core.sockets.contains(id);
            ctx.outputs.push(Output::run(move |released| {
                let _ = reply.send(if released {
                    Ok(accepted)
                } else {
                    Err(CallError::CommitFailed)
                });
            }));
        }
        Event::Message(conn, frame, done) => {
            // The gateway reads a socket's close only after its last frame, so the socket is
            // still the object's.
            let result = obj.on_message(ctx, SocketRef { conn }, frame).await;
            let _ = done.send(());
            result?;
        }
        Event::Close(id, code, reason, done) => {
            let result = match ctx.core.sockets.conn(id) {
                Some(conn) => {
                    let result = obj.on_close(ctx, SocketRef { conn }, code, reason).await;
                    ctx.core.sockets.remove(id);
                    rt.inner.stats.changed.notify_waiters();
                    result
                }
                None => Ok(()),
            };
            let _ = done.send(());
            result?;
        }
        Event::Alarm => {
            let now = rt.now_ms();
            if ctx.get_alarm().is_none_or(|at| at > now) {
                return Ok(()); // Moved or deleted since it was scheduled.
            }
            rt.inner.stats.bump(&rt.inner.stats.alarms_fired);
            obj.on_alarm(ctx).await?;
            ctx.core.alarm_failures.store(0, Ordering::Relaxed);
            if ctx.alarm_change.is_none() {
                ctx.delete_alarm();
            }
        }
        Event::EffectDone(done) => obj.on_effect(ctx, *done).await?,
    }
    Ok(())
}

/// Submits the event's writes — its storage, alarm, effects and the history of its
/// publications — as one ticket, and holds its outputs until that ticket is durable.
pub(crate) fn finish_event(rt: &Runtime, core: &SlotCore, ctx: &mut Context) {
    let mut ops = ctx.storage.take_ops();
    if let Some(change) = ctx.alarm_change.take() {
        ops.push(WriteOp::SetAlarm(change));
        rt.inner.alarms.set(&core.address, change);
    }
    if ops.iter().any(|op| matches!(op, WriteOp::DeleteAll)) && !ops.iter().any(|op| matches!(op, WriteOp::SetAlarm(_)))
    {
        rt.inner.alarms.set(&core.address, None);
    }
    let mut outputs = std::mem::take(&mut ctx.outputs);
    let pending = std::mem::take(&mut ctx.effects);
    let effects: Vec<WriteOp> = pending.iter().map(|p| p.write()).collect();
    if !pending.is_empty() {
        // Queued to run once the writes that store them are durable, after the event's other
        // outputs.
        let rt = rt.clone();
        outputs.push(Output::run(move |released| {
            if released {
                pending.into_iter().for_each(|p| rt.inner.outbox.push(&rt, p));
            }
        }));
    }
    let publishes = std::mem::take(&mut ctx.publishes);
    let (routed, publishes): (Vec<_>, Vec<_>) = if rt.inner.routed.is_some() {
        publishes.into_iter().partition(|(p, _)| rt.routes(p))
    } else {
        (Vec::new(), publishes)
    };
    if !routed.is_empty() {
        // Numbered by the cluster's numbering node, once this event's writes are durable.
        let rt = rt.clone();
        outputs.push(Output::run(move |released| {
            if released {
                routed.into_iter().for_each(|(p, _)| rt.route_publication(p));
            }
        }));
    }
    if !ops.is_empty() || !effects.is_empty() || !publishes.is_empty() {
        let now = rt.now_ms();
        let submitted = rt.inner.store.submit_with(ctx.health.clone(), || {
            let mut batch = Vec::new();
            if !ops.is_empty() {
                batch.push(ObjectWrites {
                    address: core.address.clone(),
                    ops,
                });
            }
            if !effects.is_empty() {
                batch.push(ObjectWrites {
                    address: outbox_address(),
                    ops: effects,
                });
            }
            let mut history = Vec::new();
            for (publication, cell) in &publishes {
                let (prepared, writes) = rt.inner.hub.prepare(publication, now);
                let _ = cell.set(prepared);
                history.extend(writes);
            }
            if !history.is_empty() {
                batch.push(ObjectWrites {
                    address: topics_address(),
                    ops: history,
                });
            }
            batch
        });
        match submitted {
            Ok(Some(ticket)) => {
                ctx.storage.last_ticket = ticket;
                core.last_ticket.store(ticket, Ordering::Release);
            }
            Ok(None) => {}
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
