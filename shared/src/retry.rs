//! The retry schedule of webhook deliveries.
//!
//! Attempt 1 is the first POST. After attempt `n` fails, the message waits
//! `steps[n-1]` (±20 % jitter, at least the endpoint's `Retry-After`, at most
//! 12 h = the SQS visibility-timeout maximum), then attempt `n+1` runs. When
//! there is no step left the event is dead-lettered.
//!
//! Default schedule ([`DEFAULT_RETRY_SCHEDULE`]):
//! `5s,5m,30m,2h,5h,10h` then seven `12h` steps: 13 delays, so
//! **[`DEFAULT_MAX_ATTEMPTS`] = 14 attempts** — the SQS `maxReceiveCount` of
//! the queue's redrive policy must equal it. Nominal span 101 h 35 min 5 s
//! (4.2 days); even with every jitter draw at −20 % the retries span
//! 81 h 16 min (≥ 3 days, checked by a test). Six 12 h steps would not be
//! enough: worst-case jitter would bring that down to 71 h 40 min.
//!
//! The SQS adapter sets at most 11 h 45 min of visibility for a 12 h step:
//! SQS counts its 12 h limit from the message's receive
//! (`queue::sqs::MAX_VISIBILITY`). The guaranteed span is unaffected (the shortest
//! jittered 12 h step is 9 h 36 min).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// SQS caps a message's visibility timeout at 12 hours.
pub const MAX_STEP: Duration = Duration::from_secs(43_200);

/// Default jitter: each step varies uniformly within ±20 %.
pub const DEFAULT_JITTER: f64 = 0.2;

/// The default schedule (see the module docs for the arithmetic).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,12h,12h,12h,12h,12h,12h,12h";

/// Attempts of the default schedule: the SQS redrive `maxReceiveCount`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 14;

/// Why a schedule string was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RetryScheduleError {
    /// No step at all.
    #[error("retry schedule is empty")]
    Empty,
    /// A step is not `<number><unit>` with unit ms, s, m, h or d.
    #[error("invalid retry step {0:?}: expected e.g. 5s, 30m, 2h")]
    InvalidStep(String),
    /// A step is zero.
    #[error("retry step {0:?} must be longer than zero")]
    ZeroStep(String),
    /// A step exceeds 12 h (SQS's visibility-timeout limit).
    #[error("retry step {0:?} exceeds 12h (the SQS visibility timeout limit)")]
    StepTooLong(String),
}

/// The backoff between delivery attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    steps: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            steps: DEFAULT_STEPS_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            jitter: DEFAULT_JITTER,
        }
    }
}

const DEFAULT_STEPS_SECS: [u64; 13] = [
    5, 300, 1_800, 7_200, 18_000, 36_000, 43_200, 43_200, 43_200, 43_200, 43_200, 43_200, 43_200,
];

impl RetrySchedule {
    /// A schedule from explicit steps (each in `(0, 12h]`), with the default jitter.
    pub fn new(steps: Vec<Duration>) -> Result<Self, RetryScheduleError> {
        if steps.is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        for s in &steps {
            if s.is_zero() {
                return Err(RetryScheduleError::ZeroStep(format!("{s:?}")));
            }
            if *s > MAX_STEP {
                return Err(RetryScheduleError::StepTooLong(format!("{s:?}")));
            }
        }
        Ok(Self {
            steps,
            jitter: DEFAULT_JITTER,
        })
    }

    /// Parses `"5s,5m,30m,2h"` (comma and/or whitespace separated; units ms, s, m, h, d).
    pub fn parse(s: &str) -> Result<Self, RetryScheduleError> {
        let steps = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(|p| {
                let d = parse_step(p)?;
                if d.is_zero() {
                    return Err(RetryScheduleError::ZeroStep(p.to_owned()));
                }
                if d > MAX_STEP {
                    return Err(RetryScheduleError::StepTooLong(p.to_owned()));
                }
                Ok(d)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(steps)
    }

    /// The same schedule with another jitter fraction (clamped to `[0, 0.5]`; 0 = none).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 0.5)
        } else {
            0.0
        };
        self
    }

    /// The nominal delays.
    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Total attempts, the first one included (= delays + 1). The SQS redrive
    /// policy's `maxReceiveCount` must equal this.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.steps.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Sum of the nominal delays.
    pub fn nominal_span(&self) -> Duration {
        self.steps.iter().sum()
    }

    /// Sum of the delays when every jitter draw is at its lowest.
    pub fn min_span(&self) -> Duration {
        (1..=self.max_attempts().saturating_sub(1))
            .filter_map(|n| self.delay_with(n, None, -1.0))
            .sum()
    }

    /// The wait after failed attempt `attempt` (1-based; 0 is treated as 1),
    /// with random jitter; `None` when the schedule is exhausted (dead-letter).
    pub fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let unit = fastrand::f64() * 2.0 - 1.0;
        self.delay_with(attempt, retry_after, unit)
    }

    /// Pure form of [`Self::next_delay`]: `unit` in `[-1, 1]` picks the jitter
    /// (−1 = shortest, 0 = nominal, 1 = longest). The result is
    /// `min(12h, max(step × (1 + jitter × unit), retry_after))`.
    pub fn delay_with(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempt.max(1) - 1).ok()?;
        let step = *self.steps.get(index)?;
        let unit = if unit.is_finite() {
            unit.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let jittered = step.mul_f64(1.0 + self.jitter * unit);
        let d = match retry_after {
            Some(ra) => jittered.max(ra),
            None => jittered,
        };
        Some(d.min(MAX_STEP))
    }
}

impl FromStr for RetrySchedule {
    type Err = RetryScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.steps.iter().map(|d| format_step(*d)).collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_step(p: &str) -> Result<Duration, RetryScheduleError> {
    let bad = || RetryScheduleError::InvalidStep(p.to_owned());
    let split = p.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = p.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

fn format_step(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const H: u64 = 3_600;

    #[test]
    fn default_matches_the_documented_string_and_attempt_count() {
        // GIVEN the default schedule
        let d = RetrySchedule::default();
        // THEN it equals the documented string and has 14 attempts
        assert_eq!(d, RetrySchedule::parse(DEFAULT_RETRY_SCHEDULE).unwrap());
        assert_eq!(d.to_string(), DEFAULT_RETRY_SCHEDULE);
        assert_eq!(d.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(d.steps().len(), 13);
    }

    #[test]
    fn default_spans_at_least_three_days_even_with_worst_jitter() {
        // GIVEN the default schedule
        let d = RetrySchedule::default();
        // THEN nominal and worst-case (all −20 %) spans both exceed 3 days
        assert_eq!(d.nominal_span(), Duration::from_secs(101 * H + 35 * 60 + 5));
        assert!(
            d.min_span() >= Duration::from_secs(72 * H),
            "{:?}",
            d.min_span()
        );
        // AND one 12h step fewer would not guarantee it (why there are seven)
        let mut shorter = d.steps().to_vec();
        shorter.pop();
        let shorter = RetrySchedule::new(shorter).unwrap();
        assert!(shorter.min_span() < Duration::from_secs(72 * H));
    }

    #[test]
    fn exhaustion_gives_none() {
        // GIVEN the default schedule
        let d = RetrySchedule::default();
        // THEN attempts 1..=13 get a delay, attempt 14 (the last) gets None
        for n in 1..DEFAULT_MAX_ATTEMPTS {
            assert!(d.next_delay(n, None).is_some(), "attempt {n}");
        }
        assert_eq!(d.next_delay(DEFAULT_MAX_ATTEMPTS, None), None);
        assert_eq!(d.next_delay(u32::MAX, None), None);
        // AND attempt 0 is treated as the first
        assert_eq!(d.delay_with(0, None, 0.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_varies() {
        // GIVEN the 5 min step (attempt 2)
        let d = RetrySchedule::default();
        let mut seen = std::collections::HashSet::new();
        // WHEN drawing many delays
        for _ in 0..2_000 {
            let x = d.next_delay(2, None).unwrap();
            // THEN each lies in [240 s, 360 s]
            assert!(
                x >= Duration::from_secs(240) && x <= Duration::from_secs(360),
                "{x:?}"
            );
            seen.insert(x.as_millis() / 1_000);
        }
        // AND they are spread out (not a constant)
        assert!(seen.len() > 50, "{}", seen.len());
        // AND the extremes are exact
        assert_eq!(d.delay_with(2, None, -1.0), Some(Duration::from_secs(240)));
        assert_eq!(d.delay_with(2, None, 1.0), Some(Duration::from_secs(360)));
        assert_eq!(
            d.clone().with_jitter(0.0).delay_with(2, None, 1.0),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn steps_are_capped_at_twelve_hours() {
        // GIVEN a 12 h step with upward jitter, and a huge Retry-After
        let d = RetrySchedule::default();
        // THEN nothing exceeds the SQS maximum
        assert_eq!(d.delay_with(7, None, 1.0), Some(MAX_STEP));
        assert_eq!(
            d.delay_with(1, Some(Duration::from_secs(7 * 24 * H)), 0.0),
            Some(MAX_STEP)
        );
        for n in 1..DEFAULT_MAX_ATTEMPTS {
            assert!(d.next_delay(n, None).unwrap() <= MAX_STEP);
        }
    }

    #[test]
    fn retry_after_is_honoured_as_a_minimum() {
        // GIVEN the 5 s first step
        let d = RetrySchedule::default();
        // WHEN the endpoint asks for 120 s THEN we wait 120 s
        assert_eq!(
            d.delay_with(1, Some(Duration::from_secs(120)), 1.0),
            Some(Duration::from_secs(120))
        );
        // WHEN it asks for less than the schedule THEN the schedule wins
        assert_eq!(
            d.delay_with(3, Some(Duration::from_secs(1)), 0.0),
            Some(Duration::from_secs(1_800))
        );
        // AND Retry-After never revives an exhausted schedule
        assert_eq!(d.next_delay(14, Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn parses_and_rejects() {
        // GIVEN schedule strings
        let s = RetrySchedule::parse(" 50ms, 1s 2m,3h ,1d").unwrap_err();
        // THEN a day step is too long for SQS
        assert_eq!(s, RetryScheduleError::StepTooLong("1d".into()));
        let ok = RetrySchedule::parse("50ms, 1s 2m,3h").unwrap();
        assert_eq!(
            ok.steps(),
            &[
                Duration::from_millis(50),
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3 * H)
            ]
        );
        assert_eq!(ok.to_string(), "50ms,1s,2m,3h");
        assert_eq!(ok.max_attempts(), 5);
        assert_eq!(
            RetrySchedule::parse(" , ").unwrap_err(),
            RetryScheduleError::Empty
        );
        assert_eq!(
            RetrySchedule::parse("5x").unwrap_err(),
            RetryScheduleError::InvalidStep("5x".into())
        );
        assert_eq!(
            RetrySchedule::parse("s").unwrap_err(),
            RetryScheduleError::InvalidStep("s".into())
        );
        assert_eq!(
            RetrySchedule::parse("0s").unwrap_err(),
            RetryScheduleError::ZeroStep("0s".into())
        );
        assert!("12h".parse::<RetrySchedule>().is_ok());
        assert!("99999999999999999999h".parse::<RetrySchedule>().is_err());
    }
}
