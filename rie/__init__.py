"""pyrie's Runtime Interface Emulator: serves the Lambda Runtime API to a function's process and the Invoke API to callers."""
