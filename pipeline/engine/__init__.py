"""The run machinery: running a recipe's steps (`runner`), caching their artifacts by content (`store`, keyed by
`fingerprint`), isolating heavy steps in child processes (`child`), progress and logs (`progress`), tool versions
(`versions`), and sweeps of many runs (`sweep`)."""
