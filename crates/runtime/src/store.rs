//! Group commit and the output gate.
//!
//! Every event's writes are submitted as one numbered *ticket*. A single writer task takes all
//! tickets waiting, commits them in one backend transaction (one fsync for many events and many
//! objects), and publishes the highest ticket it made durable. Outputs (frames,
//! broadcasts, replies) wait in the gate under the ticket of the last write made before them
//! and are released, in order, once that ticket is durable. If a commit fails, every object
//! whose writes it carried is poisoned: its held outputs are dropped (callers get an error),
//! its later tickets are not written, and its actor restarts from storage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::address::Address;
use crate::registry::SlotCore;
use crate::socket::{Frame, SocketConn, SocketId};
use crate::stats::Stats;
use crate::storage::{Backend, ObjectWrites, StorageError, WriteOp};

pub(crate) use crate::storage::RUNTIME_CLASS as RESERVED_CLASS;

/// How often an unhealthy writer checks whether storage works again.
const HEALTH_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Most tickets one commit takes, so one commit's latency stays bounded.
const MAX_BATCH: usize = 8192;

/// The health of one incarnation of an object: poisoned when a commit carrying its writes fails.
#[derive(Default, Debug)]
pub(crate) struct Health {
    poisoned: AtomicBool,
}

impl Health {
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

/// Something an event produced for the outside world, held until its writes are durable.
pub(crate) enum Output {
    Send(Arc<SocketConn>, Frame),
    Close(Arc<SocketConn>, u16, String),
    Broadcast {
        object: Arc<SlotCore>,
        frame: Frame,
        tag: Option<Arc<str>>,
        except: Vec<SocketId>,
    },
    /// Anything else (a reply, a publish, a message to another object, an effect): runs with
    /// `true` when released, `false` when dropped.
    Run(Box<dyn FnOnce(bool) + Send>),
}

impl Output {
    pub(crate) fn run(f: impl FnOnce(bool) + Send + 'static) -> Self {
        Output::Run(Box::new(f))
    }

    pub(crate) fn dispatch(self, released: bool) {
        match self {
            Output::Run(f) => f(released),
            _ if !released => {}
            Output::Send(conn, frame) => {
                let _ = conn.send(frame);
            }
            Output::Close(conn, code, reason) => conn.close(code, reason),
            Output::Broadcast {
                object,
                frame,
                tag,
                except,
            } => object.sockets.broadcast(&frame, tag.as_deref(), &except),
        }
    }
}

struct Held {
    health: Arc<Health>,
    outputs: Vec<Output>,
}

enum Job {
    Write {
        ticket: u64,
        writes: Vec<ObjectWrites>,
        health: Arc<Health>,
    },
    /// Answered once every ticket before it is committed.
    Flush(oneshot::Sender<()>),
}

struct Submitter {
    next_ticket: u64,
    jobs: Option<mpsc::UnboundedSender<Job>>,
}

/// The shared write path of a runtime: tickets in, durable tickets and released outputs out.
pub(crate) struct Store {
    pub(crate) backend: Arc<dyn Backend>,
    submitter: Mutex<Submitter>,
    /// Highest ticket committed (or failed) by the writer.
    committed: watch::Sender<u64>,
    /// Highest ticket whose held outputs have all been dispatched.
    released: AtomicU64,
    held: Mutex<BTreeMap<u64, Vec<Held>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the last commit succeeded: readiness for load balancers.
    healthy: AtomicBool,
}

impl Store {
    /// Starts the writer and release tasks. Must be called inside a tokio runtime.
    pub(crate) fn start(backend: Arc<dyn Backend>, stats: Arc<Stats>) -> Arc<Store> {
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (committed, mut committed_rx) = watch::channel(0);
        let store = Arc::new(Store {
            backend,
            submitter: Mutex::new(Submitter {
                next_ticket: 1,
                jobs: Some(jobs_tx),
            }),
            committed,
            released: AtomicU64::new(0),
            held: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(None),
            healthy: AtomicBool::new(true),
        });
        let handle = tokio::spawn(store.clone().write_loop(jobs_rx, stats));
        *store.writer.lock().expect("writer handle poisoned") = Some(handle);
        // The release task ends when the store (the watch sender) is dropped.
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            while committed_rx.changed().await.is_ok() {
                let ticket = *committed_rx.borrow_and_update();
                match weak.upgrade() {
                    Some(store) => store.release(ticket),
                    None => return,
                }
            }
        });
        store
    }

    /// Queues the writes `build` returns as one ticket; returns it, or `None` if there were no
    /// writes. `build` runs under the lock that orders tickets, so what it numbers (a topic's
    /// offsets) is numbered in ticket order, which is the order outputs are released in.
    pub(crate) fn submit_with(
        &self,
        health: Arc<Health>,
        build: impl FnOnce() -> Vec<ObjectWrites>,
    ) -> Result<Option<u64>, StorageError> {
        let mut sub = self.submitter.lock().expect("submitter poisoned");
        let jobs = sub.jobs.clone().ok_or(StorageError::Closed)?;
        let writes = build();
        if writes.is_empty() {
            return Ok(None);
        }
        let ticket = sub.next_ticket;
        jobs.send(Job::Write { ticket, writes, health })
            .map_err(|_| StorageError::Closed)?;
        sub.next_ticket += 1;
        Ok(Some(ticket))
    }

    /// Queues one object's writes as one ticket.
    pub(crate) fn submit(&self, writes: ObjectWrites, health: Arc<Health>) -> Result<u64, StorageError> {
        self.submit_with(health, || vec![writes])?.ok_or(StorageError::Closed)
    }

    /// Holds `outputs` until `ticket` is durable, then dispatches them in order.
    pub(crate) fn hold(&self, ticket: u64, health: &Arc<Health>, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        // Fast path: everything up to `ticket` is already out, so nothing can overtake these.
        if self.released.load(Ordering::Acquire) >= ticket {
            let ok = !health.is_poisoned();
            outputs.into_iter().for_each(|o| o.dispatch(ok));
            return;
        }
        let mut held = self.held.lock().expect("gate poisoned");
        if self.released.load(Ordering::Acquire) >= ticket {
            let ok = !health.is_poisoned();
            outputs.into_iter().for_each(|o| o.dispatch(ok));
            return;
        }
        held.entry(ticket).or_default().push(Held {
            health: health.clone(),
            outputs,
        });
    }

    fn release(&self, ticket: u64) {
        let mut held = self.held.lock().expect("gate poisoned");
        let rest = held.split_off(&(ticket + 1));
        let ready = std::mem::replace(&mut *held, rest);
        // Dispatch under the gate lock: a concurrent `hold` for a ticket <= `ticket` must not
        // overtake these. Dispatch only enqueues; it never waits on a client.
        for entry in ready.into_values().flatten() {
            let ok = !entry.health.is_poisoned();
            entry.outputs.into_iter().for_each(|o| o.dispatch(ok));
        }
        self.released.fetch_max(ticket, Ordering::AcqRel);
    }

    /// Waits until `ticket` is committed (or failed).
    pub(crate) async fn wait_committed(&self, ticket: u64) {
        let mut rx = self.committed.subscribe();
        let _ = rx.wait_for(|c| *c >= ticket).await;
    }

    /// True while the writer accepts writes and its last commit succeeded.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.submitter.lock().expect("submitter poisoned").jobs.is_some()
    }

    /// Highest committed ticket.
    pub(crate) fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Commits everything submitted so far and stops the writer task.
    pub(crate) async fn close(&self) {
        let jobs = self.submitter.lock().expect("submitter poisoned").jobs.take();
        if let Some(jobs) = jobs {
            let (tx, rx) = oneshot::channel();
            if jobs.send(Job::Flush(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        let writer = self.writer.lock().expect("writer handle poisoned").take();
        if let Some(handle) = writer {
            let _ = handle.await;
        }
    }

    async fn write_loop(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>, stats: Arc<Stats>) {
        let batch_size = metrics::histogram!("switchboard_storage_commit_batch_size");
        let latency = metrics::histogram!("switchboard_storage_commit_seconds");
        loop {
            // While unhealthy, an empty commit each second tells when storage works again, even
            // if no writes come (a load balancer stops sending traffic to an unready node).
            let first = if self.healthy.load(Ordering::Acquire) {
                jobs.recv().await
            } else {
                tokio::select! {
                    job = jobs.recv() => job,
                    _ = tokio::time::sleep(HEALTH_PROBE) => {
                        let probe = ObjectWrites {
                            address: Address::new(RESERVED_CLASS, "health"),
                            ops: vec![WriteOp::Put("probe".into(), b"1".to_vec())],
                        };
                        let ok = self.backend.commit(vec![probe]).await.is_ok();
                        self.healthy.store(ok, Ordering::Release);
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut writes = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write {
                        ticket,
                        writes: w,
                        health,
                    } => writes.push((ticket, w, health)),
                    Job::Flush(done) => flushes.push(done),
                }
                if writes.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            if let Some(&(last, _, _)) = writes.last() {
                // Writes of objects poisoned by an earlier failure were computed from state that
                // never became durable: they are dropped, and their outputs with them.
                let mut live = Vec::new();
                let mut healths = Vec::with_capacity(writes.len());
                for (_, w, health) in writes {
                    if !health.is_poisoned() {
                        live.extend(w);
                    }
                    healths.push(health);
                }
                let count = live.len();
                let started = Instant::now();
                let result = if live.is_empty() {
                    Ok(())
                } else {
                    self.backend.commit(live).await
                };
                latency.record(started.elapsed().as_secs_f64());
                batch_size.record(count as f64);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                if count > 0 {
                    self.healthy.store(result.is_ok(), Ordering::Release);
                }
                if let Err(e) = result {
                    tracing::error!(error = %e, tickets = healths.len(), "storage commit failed; affected objects restart from storage");
                    stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                    for health in &healths {
                        health.poisoned.store(true, Ordering::Release);
                    }
                }
                self.committed.send_replace(last);
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
}

/// Drops outputs that will never be released: replies report the failure.
pub(crate) fn fail_all(outputs: Vec<Output>) {
    outputs.into_iter().for_each(|o| o.dispatch(false));
}
