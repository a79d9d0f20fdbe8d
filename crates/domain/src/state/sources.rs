//! Saved sources as the projection knows them, and when each is due (decision 0031).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::State;
use crate::event::{Event, Selection};
use crate::permissions::Permission;
use crate::time::Timestamp;
use crate::values::{IngestionId, Schedule, SourceId, SourceName, UserId};

/// How many runs each source keeps in the state (the view's `recent_runs`).
pub const RECENT_SOURCE_RUNS: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: SourceId,
    pub owner: UserId,
    pub name: SourceName,
    pub selection: Selection,
    pub destination: String,
    pub schedule: Option<Schedule>,
    pub paused: bool,
    pub created_at: Timestamp,
    /// When it was last resumed: occurrences while it was paused are not caught up.
    pub resumed_at: Option<Timestamp>,
    /// The occurrence its last scheduled run ran for.
    pub last_scheduled_for: Option<Timestamp>,
    /// Every run ever started.
    pub runs: u64,
    /// The last [`RECENT_SOURCE_RUNS`] runs, oldest first.
    pub recent_runs: VecDeque<SourceRun>,
    /// The last scheduled run refused for its owner's situation (`SourceRunRefused`).
    pub last_refusal: Option<SourceRefusal>,
}

/// A scheduled run the vault refused: for which occurrence, why, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRefusal {
    pub scheduled_for: Timestamp,
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRun {
    pub ingestion: IngestionId,
    /// The occurrence it ran for; `None` for a run by hand.
    pub scheduled_for: Option<Timestamp>,
    pub started_at: Timestamp,
}

impl Source {
    pub fn last_run(&self) -> Option<&SourceRun> {
        self.recent_runs.back()
    }

    /// The last refusal while no run started after it: what the owner should still see.
    pub fn current_refusal(&self) -> Option<&SourceRefusal> {
        let refusal = self.last_refusal.as_ref()?;
        match self.last_run() {
            Some(run) if run.started_at >= refusal.at => None,
            _ => Some(refusal),
        }
    }
}

impl State {
    pub fn source(&self, id: &SourceId) -> Option<&Source> {
        self.sources.get(id)
    }

    /// Every live source, by id.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    /// The job of the source's last run while it has not finished: a run that is still going.
    pub fn source_running<'s>(&'s self, source: &'s Source) -> Option<&'s IngestionId> {
        let last = source.last_run()?;
        let job = self.ingestion(&last.ingestion)?;
        (!job.state.is_finished()).then_some(&last.ingestion)
    }

    /// The occurrence a scheduler owes at `now`: the latest one after the source was created,
    /// resumed, last ran on schedule, or saw its last run's job finish (an occurrence that fell
    /// while a run was going is skipped, not run late). `None` while paused, unscheduled,
    /// running, or its owner may not import (a deactivated user's sources stop).
    pub fn source_due(&self, source: &Source, now: Timestamp) -> Option<Timestamp> {
        if source.paused
            || self.source_running(source).is_some()
            || !self.has_permission(&source.owner, Permission::ImportOrganizationSamples)
        {
            return None;
        }
        source
            .schedule
            .as_ref()?
            .latest_due(self.source_baseline(source), now)
    }

    /// When the source runs next on its schedule as of `now` (an occurrence already due and
    /// not yet started, or the next one; while a run is going, the next one after `now`);
    /// `None` while paused or unscheduled.
    pub fn source_next_run(&self, source: &Source, now: Timestamp) -> Option<Timestamp> {
        if source.paused {
            return None;
        }
        let schedule = source.schedule.as_ref()?;
        let baseline = self.source_baseline(source);
        let due = match self.source_running(source) {
            Some(_) => None,
            None => schedule.latest_due(baseline, now),
        };
        due.or_else(|| schedule.next_after(baseline.max(now)))
    }

    fn source_baseline(&self, source: &Source) -> Timestamp {
        let finished = source
            .last_run()
            .and_then(|run| self.ingestion(&run.ingestion)?.finished_at);
        [source.resumed_at, source.last_scheduled_for, finished]
            .into_iter()
            .flatten()
            .fold(source.created_at, Timestamp::max)
    }

    /// The source events' changes: the helper of [`State::apply`].
    pub(super) fn apply_source(&mut self, event: Event) {
        match event {
            Event::SourceSaved {
                source,
                owner,
                name,
                selection,
                destination,
                schedule,
                timezone,
                at,
            } => {
                let schedule = schedule
                    .zip(timezone)
                    .map(|(cron, zone)| Schedule::from_trusted(&cron, &zone));
                self.sources.insert(
                    source.clone(),
                    Source {
                        id: source,
                        owner,
                        name,
                        selection,
                        destination,
                        schedule,
                        paused: false,
                        created_at: at,
                        resumed_at: None,
                        last_scheduled_for: None,
                        runs: 0,
                        recent_runs: VecDeque::new(),
                        last_refusal: None,
                    },
                );
            }
            Event::SourcePaused { source, .. } => {
                if let Some(source) = self.sources.get_mut(&source) {
                    source.paused = true;
                }
            }
            Event::SourceResumed { source, at, .. } => {
                if let Some(source) = self.sources.get_mut(&source) {
                    source.paused = false;
                    source.resumed_at = Some(at);
                }
            }
            Event::SourceDeleted { source, .. } => {
                self.sources.remove(&source);
            }
            Event::SourceRunStarted {
                source,
                ingestion,
                scheduled_for,
                at,
                ..
            } => {
                if let Some(source) = self.sources.get_mut(&source) {
                    source.runs += 1;
                    if scheduled_for.is_some() {
                        source.last_scheduled_for = scheduled_for.max(source.last_scheduled_for);
                    }
                    source.recent_runs.push_back(SourceRun {
                        ingestion,
                        scheduled_for,
                        started_at: at,
                    });
                    if source.recent_runs.len() > RECENT_SOURCE_RUNS {
                        source.recent_runs.pop_front();
                    }
                }
            }
            Event::SourceRunRefused {
                source,
                scheduled_for,
                reason,
                at,
                ..
            } => {
                if let Some(source) = self.sources.get_mut(&source) {
                    source.last_refusal = Some(SourceRefusal {
                        scheduled_for,
                        reason,
                        at,
                    });
                }
            }
            _ => {}
        }
    }
}
