"""Where backups are kept: storage backends (local folders, S3), locations and their markers, offsite
copies, downloads, catalog manifests beside each backup and rebuilding the catalog from them, audit anchors."""
