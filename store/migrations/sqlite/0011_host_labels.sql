-- Host labels (the agent's `[labels]`, sent in Hello) as a JSON object of name -> value; the
-- collector's groups select hosts by them (`env=prod`). Replaced by each fresh Hello.
ALTER TABLE hosts ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
