"""Billing: customer accounts, metering, hourly usage, rating and invoices."""
