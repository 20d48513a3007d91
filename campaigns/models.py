"""Models of campaigns: built with the campaigns issue."""
