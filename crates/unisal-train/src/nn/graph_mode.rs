//! Whether the CUDA convolutions go through execution plans of cuDNN's graph API (`nn/cudnn/graph.rs`), by
//! `UNISAL_CUDNN_GRAPH`: `0` (or `off`, `false`), never (cuDNN's legacy calls); `1`, always; unset or `auto` (the
//! default since session 18: dual ResNet-50 527 against 482 img/s on an H200), for each pass where its best plan
//! timed faster than the legacy choice. Apart from the CUDA code, so that it is built and tested everywhere.

use std::sync::OnceLock;

/// What `UNISAL_CUDNN_GRAPH` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Off,
    On,
    Auto,
}

impl Mode {
    fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("1" | "on" | "true") => Self::On,
            Some("0" | "off" | "false") => Self::Off,
            _ => Self::Auto,
        }
    }

    /// Whether a pass goes through its best plan, timed at `graph_ms`, rather than the legacy choice, timed by
    /// cuDNN at `legacy_ms` (negative: not timed).
    pub(crate) fn takes_plan(self, graph_ms: f32, legacy_ms: f32) -> bool {
        match self {
            Self::Off => false,
            Self::On => true,
            Self::Auto => legacy_ms > 0.0 && graph_ms < legacy_ms,
        }
    }
}

/// This process's [`Mode`].
pub(crate) fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| Mode::parse(std::env::var("UNISAL_CUDNN_GRAPH").ok().as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_picks_plans_always_never_or_where_faster() {
        assert_eq!(Mode::parse(None), Mode::Auto);
        assert_eq!(Mode::parse(Some("0")), Mode::Off);
        assert_eq!(Mode::parse(Some(" off")), Mode::Off);
        assert_eq!(Mode::parse(Some(" 1")), Mode::On);
        assert_eq!(Mode::parse(Some("auto")), Mode::Auto);
        assert!(Mode::On.takes_plan(2.0, 1.0));
        assert!(!Mode::Off.takes_plan(0.5, 1.0));
        assert!(Mode::Auto.takes_plan(0.5, 1.0));
        assert!(!Mode::Auto.takes_plan(1.5, 1.0));
        // A legacy choice cuDNN did not time (its heuristics): the legacy path stays.
        assert!(!Mode::Auto.takes_plan(0.5, -1.0));
    }
}
