"""Reports: what people read (rich tables, JSON documents, drawings); no simulation here."""
