"""The app's modal screens: approval of a dangerous call, the session picker."""
