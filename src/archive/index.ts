// Public API of the cold-storage archiver.
export { exportOnce, runArchiver, type ArchiveDeps, type ArchiveStats, type PartitionResult, type ArchiveMetrics } from './archiver';
export { ARCHIVE_SPEC, STORE_SPEC, resolveArchiveOptions, checkArchiveOptions, type ArchiveOptions, type StoreOptions } from './options';
export { HOUR_US, MANIFEST_FILE, PART_FILE, partitionPath, tableLayout, type Manifest } from './layout';
export { openStore, LocalStore, S3Store, withRetry, type ObjectStore } from './store';
