"""
Clients of concrete names: endpoints, load balancing, failure accrual.
"""
