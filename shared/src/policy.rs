//! Store-agnostic judgement calls that app makers may tune.

/// When a refund is flagged `suspicious_refund`: the "buy a long period, use it,
/// refund quickly" pattern. A refund is suspicious when the refunded period is
/// at least `min_period_days` long and the refund came within
/// `max_days_since_purchase` days of the purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundPolicy {
    /// Shortest refunded period that counts as "long" (default 180 days: half-yearly and yearly plans).
    pub min_period_days: i64,
    /// Refunds at most this many days after purchase count as "quick" (default 30).
    pub max_days_since_purchase: i64,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        Self {
            min_period_days: 180,
            max_days_since_purchase: 30,
        }
    }
}

impl RefundPolicy {
    /// Whether a refund of a `period_days`-long period, `days_since_purchase` days
    /// after purchase, is suspicious. Unknown period: not suspicious.
    pub fn is_suspicious(
        &self,
        period_days: Option<i64>,
        days_since_purchase: Option<i64>,
    ) -> bool {
        matches!(
            (period_days, days_since_purchase),
            (Some(p), Some(d)) if p >= self.min_period_days && d <= self.max_days_since_purchase
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yearly_refunded_quickly_is_suspicious() {
        let p = RefundPolicy::default();
        assert!(p.is_suspicious(Some(365), Some(3)));
        assert!(p.is_suspicious(Some(180), Some(30)));
        assert!(!p.is_suspicious(Some(365), Some(31)));
        assert!(!p.is_suspicious(Some(30), Some(1)));
        assert!(!p.is_suspicious(None, Some(1)));
        assert!(!p.is_suspicious(Some(365), None));
    }
}
