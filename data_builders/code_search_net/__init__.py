"""code_search_net dataset."""
