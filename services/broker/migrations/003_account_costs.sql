-- What each account's runners spent on providers per UTC day, for
-- maxCostPerDay.
CREATE TABLE account_costs (
  account_id uuid NOT NULL,
  day date NOT NULL,
  cost_usd double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (account_id, day)
);
