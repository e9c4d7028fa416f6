import streamlit as st

st.title('investigation')
st.info('This page is being built.')
