//! Following a job: its Server-Sent Events as typed events ([`Client::events`]), reconnecting
//! with `Last-Event-ID` when the connection drops, and polling as the fallback
//! ([`Client::watch`]) for networks where the stream cannot be opened or never delivers (a proxy
//! that buffers responses): a front end that gets an error from `events` can switch to `watch`.
//!
//! The wire format is the server's (`kiln_api::events`): each event has `id` (its place in the
//! job's log), `event: state` with a [`StateChange`] or `event: progress` with a [`Progress`];
//! the stream ends after the state event of a final state.

use std::time::Duration;

use futures_util::Stream;
use kiln_api::events::{PROGRESS_EVENT, Progress, STATE_EVENT, StateChange};
use kiln_api::jobs::{Job, JobState};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response};
use url::Url;
use uuid::Uuid;

use crate::client::{Attempt, Client, refusal};
use crate::error::{CloudError, url_host};

/// The longest a stream may stay silent before it counts as dropped: three of the server's 15 s
/// keep-alive comments, so one late comment is no reason to reconnect, and a stalled connection
/// is noticed within a minute.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// The header a reconnecting stream names the last event it got with.
const LAST_EVENT_ID: &str = "last-event-id";

/// One event of a job's stream.
#[derive(Clone, Debug)]
pub enum JobStreamEvent {
    /// The job moved to a new state.
    State { id: i64, change: StateChange },
    /// The engine's progress.
    Progress { id: i64, progress: Progress },
}

impl JobStreamEvent {
    /// The event's place in the job's log (what `Last-Event-ID` resumes after).
    pub fn id(&self) -> i64 {
        match self {
            JobStreamEvent::State { id, .. } | JobStreamEvent::Progress { id, .. } => *id,
        }
    }

    /// A state event of a final state: the stream's last.
    pub fn is_final(&self) -> bool {
        matches!(self, JobStreamEvent::State { change, .. } if change.state.is_final())
    }
}

impl Client {
    /// The job's events from after `last_event_id` (from the start without it), live, ending
    /// after the final state's event. A dropped connection is reopened with `Last-Event-ID`, so
    /// no event comes twice or goes missing; opening is retried with the retry policy, and a
    /// stream that keeps dropping without delivering anything (as many times in a row as the
    /// policy has attempts) ends with [`CloudError::Network`]. Any error ends the stream.
    pub fn events(
        &self,
        job_id: Uuid,
        last_event_id: Option<i64>,
    ) -> impl Stream<Item = Result<JobStreamEvent, CloudError>> + Send + 'static {
        let follow =
            Follow { client: self.clone(), job_id, last_id: last_event_id, connection: None, drops: 0, done: false };
        futures_util::stream::unfold(follow, |mut follow| async move {
            let item = follow.next().await?;
            Some((item, follow))
        })
    }

    /// The job polled every `every`: its first snapshot, then each one whose state, stage,
    /// progress, attempts or queue position changed, ending with the first in a final state. An
    /// error (after the client's retries) ends it.
    pub fn watch(&self, job_id: Uuid, every: Duration) -> impl Stream<Item = Result<Job, CloudError>> + Send + 'static {
        let watch = Watch { client: self.clone(), job_id, every, last: None, started: false, done: false };
        futures_util::stream::unfold(watch, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
    }
}

/// Where an event stream is.
struct Follow {
    client: Client,
    job_id: Uuid,
    /// The id of the last event delivered.
    last_id: Option<i64>,
    connection: Option<Connection>,
    /// Connections in a row that ended without delivering an event.
    drops: u32,
    done: bool,
}

struct Connection {
    response: Response,
    parser: SseParser,
    /// It delivered at least one event.
    delivered: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<JobStreamEvent, CloudError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(connection) = &mut self.connection else {
                match self.open().await {
                    Ok(response) => {
                        self.connection = Some(Connection { response, parser: SseParser::default(), delivered: false })
                    }
                    Err(error) => return self.fail(error),
                }
                continue;
            };
            if let Some(message) = connection.parser.next_message() {
                match typed(message) {
                    Ok(Some(event)) => {
                        connection.delivered = true;
                        self.drops = 0;
                        self.last_id = Some(event.id());
                        self.done = event.is_final();
                        return Some(Ok(event));
                    }
                    Ok(None) => continue,
                    Err(error) => return self.fail(error),
                }
            }
            match tokio::time::timeout(IDLE_TIMEOUT, connection.response.chunk()).await {
                Ok(Ok(Some(bytes))) => connection.parser.push(&bytes),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    if let Some(ended) = self.dropped().await {
                        return ended;
                    }
                }
            }
        }
    }

    /// The connection ended before the final state: reconnect (after a backoff when it
    /// delivered nothing). `Some` ends the stream: `Some(None)` when the job turns out to be
    /// over (the server closes at once a stream resumed after the final event), `Some(Some(error))`
    /// when it keeps dropping.
    async fn dropped(&mut self) -> Option<Option<Result<JobStreamEvent, CloudError>>> {
        let delivered = self.connection.take().is_some_and(|c| c.delivered);
        tracing::debug!(job_id = %self.job_id, last_event_id = ?self.last_id, "event stream dropped; reconnecting");
        if delivered {
            return None;
        }
        self.drops += 1;
        match self.client.job(self.job_id).await {
            Ok(job) if job.state.is_final() && self.last_id.is_some() => {
                self.done = true;
                return Some(None);
            }
            Ok(_) => {}
            Err(error) => return Some(self.fail(error)),
        }
        let policy = self.client.retry_policy();
        if self.drops >= policy.attempts {
            let url_host = url_host(self.client.server());
            let detail = format!("the job's event stream closed {} times in a row without an event", self.drops);
            return Some(self.fail(CloudError::Network { url_host, detail }));
        }
        tokio::time::sleep(policy.delay(self.drops, None)).await;
        None
    }

    fn fail(&mut self, error: CloudError) -> Option<Result<JobStreamEvent, CloudError>> {
        self.done = true;
        Some(Err(error))
    }

    /// Opens the stream after `last_id`, retried like any call.
    async fn open(&self) -> Result<Response, CloudError> {
        let url = self.client.url(&format!("/v1/jobs/{}/events", self.job_id))?;
        self.client
            .with_retries(|| async {
                let mut request = self.client.request(Method::GET, url.clone()).header(ACCEPT, "text/event-stream");
                if let Some(last) = self.last_id {
                    request = request.header(LAST_EVENT_ID, last.to_string());
                }
                match tokio::time::timeout(self.client.timeout(), request.send()).await {
                    Ok(Ok(response)) => accept_stream(&url, response).await,
                    Ok(Err(error)) => Attempt::Retry(CloudError::network(&url, error), None),
                    Err(_) => Attempt::Retry(timed_out(&url, self.client.timeout()), None),
                }
            })
            .await
    }
}

fn timed_out(url: &Url, after: Duration) -> CloudError {
    CloudError::Network { url_host: url_host(url), detail: format!("no answer in {} s", after.as_secs()) }
}

/// A 200 with an event stream, or the refusal.
async fn accept_stream(url: &Url, response: Response) -> Attempt<Response> {
    if !response.status().is_success() {
        return match refusal(url, response).await {
            (error, retry_after, true) => Attempt::Retry(error, retry_after),
            (error, _, false) => Attempt::Fail(error),
        };
    }
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("text/event-stream") {
        Attempt::Done(response)
    } else {
        Attempt::Fail(CloudError::Protocol(format!(
            "the event stream answered {content_type:?}, not text/event-stream"
        )))
    }
}

/// A message as a typed event; `None` for an event name this client does not know (a newer
/// server's), which is skipped.
fn typed(message: SseMessage) -> Result<Option<JobStreamEvent>, CloudError> {
    let id = message
        .id
        .as_deref()
        .and_then(|id| id.trim().parse::<i64>().ok())
        .ok_or_else(|| CloudError::Protocol(format!("a job event without a numeric id: {:?}", message.id)))?;
    let bad = |e: serde_json::Error| CloudError::Protocol(format!("job event {id} ({}): {e}", message.event));
    match message.event.as_str() {
        STATE_EVENT => {
            Ok(Some(JobStreamEvent::State { id, change: serde_json::from_str(&message.data).map_err(bad)? }))
        }
        PROGRESS_EVENT => {
            Ok(Some(JobStreamEvent::Progress { id, progress: serde_json::from_str(&message.data).map_err(bad)? }))
        }
        other => {
            tracing::debug!(event = other, id, "skipping an unknown job event");
            Ok(None)
        }
    }
}

/// One dispatched Server-Sent Event.
#[derive(Debug, PartialEq)]
struct SseMessage {
    id: Option<String>,
    event: String,
    data: String,
}

/// The event-stream format (HTML's "Server-sent events", §9.2.6), fed bytes as they come:
/// `field: value` lines, `:` comments (keep-alives), a blank line dispatching the event.
#[derive(Default)]
struct SseParser {
    /// Bytes not yet ending in a newline.
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete event in what was pushed, if any.
    fn next_message(&mut self) -> Option<SseMessage> {
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if let Some(message) = self.dispatch() {
                    return Some(message);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" if !value.contains('\0') => self.id = Some(value.to_string()),
                "event" => self.event = Some(value.to_string()),
                "data" => {
                    // Each data line ends with a newline: lines join with it, the last is dropped.
                    let data = self.data.get_or_insert_with(String::new);
                    data.push_str(value);
                    data.push('\n');
                }
                _ => {}
            }
        }
        None
    }

    /// The event gathered since the last blank line; none when it had no data (per the format).
    fn dispatch(&mut self) -> Option<SseMessage> {
        let event = self.event.take();
        let id = self.id.take();
        let mut data = self.data.take()?;
        data.pop();
        Some(SseMessage { id, event: event.unwrap_or_else(|| "message".into()), data })
    }
}

/// Where a polling watch is.
struct Watch {
    client: Client,
    job_id: Uuid,
    every: Duration,
    /// What the last snapshot delivered showed.
    last: Option<Snapshot>,
    started: bool,
    done: bool,
}

/// What a watch compares to decide a snapshot is news.
#[derive(PartialEq)]
struct Snapshot {
    state: JobState,
    stage: Option<String>,
    fraction: u32,
    attempts: i32,
    queue_position: Option<i64>,
    cancel_requested: bool,
}

impl Snapshot {
    fn of(job: &Job) -> Snapshot {
        Snapshot {
            state: job.state,
            stage: job.stage.clone(),
            fraction: job.fraction.to_bits(),
            attempts: job.attempts,
            queue_position: job.queue_position,
            cancel_requested: job.cancel_requested,
        }
    }
}

impl Watch {
    async fn next(&mut self) -> Option<Result<Job, CloudError>> {
        loop {
            if self.done {
                return None;
            }
            if self.started {
                tokio::time::sleep(self.every).await;
            }
            self.started = true;
            let job = match self.client.job(self.job_id).await {
                Ok(job) => job,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            };
            self.done = job.state.is_final();
            let snapshot = Snapshot::of(&job);
            if self.last.as_ref() != Some(&snapshot) {
                self.last = Some(snapshot);
                return Some(Ok(job));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(parser: &mut SseParser) -> Vec<SseMessage> {
        std::iter::from_fn(|| parser.next_message()).collect()
    }

    fn message(id: &str, event: &str, data: &str) -> SseMessage {
        SseMessage { id: Some(id.into()), event: event.into(), data: data.into() }
    }

    #[test]
    fn events_are_read_across_chunk_boundaries_with_comments_and_crlf() {
        let stream = ": keep-alive\n\nid: 1\nevent: state\ndata: {\"a\":1}\n\nid:2\r\nevent:progress\r\ndata: x\r\ndata: y\r\n\r\n";
        let mut parser = SseParser::default();
        let mut got = Vec::new();
        for chunk in stream.as_bytes().chunks(5) {
            parser.push(chunk);
            got.extend(messages(&mut parser));
        }
        assert_eq!(got, [message("1", "state", "{\"a\":1}"), message("2", "progress", "x\ny")]);
        parser.push(b"id: 3\nevent: state\ndata: {}");
        assert!(messages(&mut parser).is_empty(), "no event before its blank line");
    }

    #[test]
    fn blocks_without_data_dispatch_nothing_and_names_default_to_message() {
        let mut parser = SseParser::default();
        parser.push(b"id: 7\nevent: state\n\ndata: plain\n\n");
        assert_eq!(messages(&mut parser), [SseMessage { id: None, event: "message".into(), data: "plain".into() }]);
    }

    #[test]
    fn messages_become_typed_events_and_unknown_names_are_skipped() {
        let state = message("4", "state", r#"{"state":"succeeded","attempts":1,"reason":"finished","error":null}"#);
        let event = typed(state).unwrap().unwrap();
        assert_eq!(event.id(), 4);
        assert!(event.is_final());
        let running = message("5", "state", r#"{"state":"running","attempts":1,"reason":"leased","error":null}"#);
        assert!(!typed(running).unwrap().unwrap().is_final());
        assert!(typed(message("6", "gossip", "{}")).unwrap().is_none());
        assert!(typed(message("x", "state", "{}")).is_err_and(|e| e.kind() == crate::ErrorKind::Protocol));
        assert!(typed(message("8", "progress", r#"{"stage":"train"}"#)).is_err());
    }
}
