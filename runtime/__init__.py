"""pyrie's lean Python runtime client: a drop-in for awslambdaric."""
