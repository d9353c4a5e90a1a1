-- Spend limits: a monthly token allowance per subscription (NULL: unlimited), an optional
-- monthly cap per instance set by its user, and the 80 % warnings already given (one per
-- account or instance and month).
ALTER TABLE subscriptions ADD COLUMN monthly_tokens BIGINT CHECK (monthly_tokens >= 0);
ALTER TABLE instances ADD COLUMN monthly_token_limit BIGINT CHECK (monthly_token_limit >= 0);

CREATE TABLE usage_warnings (
    subject UUID NOT NULL,
    month DATE NOT NULL,
    PRIMARY KEY (subject, month)
);

-- An invite grants its subscription's allowance too.
ALTER TABLE invite_codes ADD COLUMN monthly_tokens BIGINT CHECK (monthly_tokens >= 0);
