"""The workflow's pages (one module per step) and the widgets they share."""
