/** Exit statuses of every `pgveil` command: 0 done, 1 a check or run that failed, 2 usage or configuration errors. */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2
