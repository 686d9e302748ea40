//! Inbound message rate limiting per connection: a token bucket.
//!
//! A connection may send `per_second` messages per second on average, in bursts of up to
//! twice that. A message over the rate is refused (the first refusal of a run is answered
//! with a `RATE_LIMITED` error, the rest are dropped silently so the flood is not echoed);
//! a peer that keeps sending through a whole burst's worth of refusals is closed with 1008.

use std::time::Instant;

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the rate. `first` is set on the first refusal after an admitted message.
    Refuse {
        first: bool,
    },
    /// Sustained abuse: close the connection (1008).
    Close,
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    refused_in_a_row: u32,
}

impl TokenBucket {
    /// A full bucket allowing `per_second` messages per second, bursts of twice that.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            capacity: per_second * 2.0,
            tokens: per_second * 2.0,
            last: now,
            refused_in_a_row: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Admit::Yes;
        }
        self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
        if f64::from(self.refused_in_a_row) > self.capacity {
            Admit::Close
        } else {
            Admit::Refuse {
                first: self.refused_in_a_row == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_burst_is_admitted_then_refused() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..20 {
            assert_eq!(bucket.admit(start), Admit::Yes);
        }
        assert_eq!(bucket.admit(start), Admit::Refuse { first: true });
        assert_eq!(bucket.admit(start), Admit::Refuse { first: false });
    }

    #[test]
    fn tokens_come_back_with_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..20 {
            bucket.admit(start);
        }
        assert_eq!(bucket.admit(start + Duration::from_millis(100)), Admit::Yes);
    }

    #[test]
    fn refusing_a_whole_burst_closes() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..20 {
            bucket.admit(start);
        }
        for _ in 0..20 {
            assert!(matches!(bucket.admit(start), Admit::Refuse { .. }));
        }
        assert_eq!(bucket.admit(start), Admit::Close);
    }
}
