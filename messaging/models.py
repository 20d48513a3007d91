"""Models of messaging: built with the WhatsApp messaging issue."""
