-- The filesystem a disk check measured (its device number, else its mount point), so fleet
-- totals count a filesystem once when several checks of one host sit on it (disk.backup and
-- disk.archive both on /). NULL for other kinds and for rows written before this column.
ALTER TABLE rollups ADD COLUMN filesystem TEXT;
