//! What a build reports while it runs: one event per step start, cache hit, miss (with the
//! reason) and completion. The CLI renders them; the library never prints.

use std::sync::Arc;

/// A step event. `id` numbers the steps of one build in the order they start.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step that writes files starts (`pos` of `total` in its stage).
    Step {
        /// Step number in this build.
        id: usize,
        /// The stage's name (`AS name`) or `stage-N`.
        stage: String,
        /// Position among the stage's file-writing steps, from 1.
        pos: usize,
        /// How many such steps the stage has.
        total: usize,
        /// The instruction as written.
        text: String,
    },
    /// The step's result came from the cache.
    Cached {
        /// Step number.
        id: usize,
    },
    /// The step missed the cache and runs.
    Miss {
        /// Step number.
        id: usize,
        /// What changed since the last build of this step.
        reason: String,
    },
    /// Something the user should know about the build as a whole.
    Note {
        /// The text.
        text: String,
    },
    /// Layers were downloaded because a step needed them (lazy bases, registry cache hits).
    Pulled {
        /// `registry/repository`.
        from: String,
        /// How many layers.
        layers: usize,
        /// Compressed bytes moved.
        bytes: u64,
        /// Wall time.
        secs: f64,
    },
    /// A line a RUN step's command printed.
    Output {
        /// Step number.
        id: usize,
        /// The line, without its newline.
        line: String,
    },
    /// The step ran.
    Done {
        /// Step number.
        id: usize,
        /// Wall time.
        secs: f64,
        /// What the step's layer cost, e.g. `compressed 12 kB, copied 1021 of 1023 gzip members`.
        detail: String,
    },
}

impl Event {
    /// A note about the whole build (which isolation RUN uses, ...).
    pub fn note(text: impl Into<String>) -> Event {
        Event::Note { text: text.into() }
    }
}

/// Receives events (from several stage threads at once).
pub type Reporter = Arc<dyn Fn(&Event) + Send + Sync>;
