-- Each row the fold writes (ticket_rows, customer_rows) carries the batch that wrote it: a
-- hash of the batch's event ids, the same each time that batch is folded again.
--
-- Why: on a cluster the tables are Replicated*MergeTree, and ClickHouse drops an inserted
-- block identical to one of the table's recent blocks (insert_deduplicate). That is what
-- makes the fold's retry after a failed insert harmless: the same batch writes the same
-- block, and a copy that landed before is not counted twice. Without this column, two
-- different batches could write identical blocks (a customer whose ticket moves to another
-- requester, back, and away again writes the same cancel row twice), and the second would be
-- dropped: the customer's row would stay live. With it, only the same batch's blocks are
-- identical. Rows written before this migration read 0; nothing reads the column back.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: Migrate skips an ADD COLUMN whose column
-- exists, so that two processes migrating at once both succeed.
ALTER TABLE ticket_rows ADD COLUMN fold_batch UInt64 DEFAULT 0;

ALTER TABLE customer_rows ADD COLUMN fold_batch UInt64 DEFAULT 0;
