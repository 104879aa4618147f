// The entry point of the test-only `disttrain-comm-check` executable (CommCheck.swift).
CommCheck.main()
